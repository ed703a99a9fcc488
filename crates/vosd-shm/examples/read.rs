//! The README's reader: prints the objects of every frame vosd publishes.
//!
//! `cargo run -p vosd-shm --example read -- /vosd-cam0`

use std::time::Duration;

use vosd_shm::{ReadStatus, ShmReader};

fn main() -> Result<(), vosd_shm::ShmError> {
    let name = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/vosd-cam0".into());
    let mut reader = ShmReader::open(&name)?;
    let mut frame = reader.new_frame_buf(); // allocated once, refilled by every read
    loop {
        match reader.wait_next(&mut frame, Duration::from_secs(1))? {
            ReadStatus::Frame { .. } => {
                for o in frame.objects() {
                    let (id, area, vis) = (o.id, o.area, o.visibility);
                    println!("frame {} id {id} area {area} {vis}", frame.frame_number());
                }
            }
            ReadStatus::Empty => {}     // no new frame within the second
            ReadStatus::Ended => break, // the daemon stopped cleanly
        }
    }
    Ok(())
}
