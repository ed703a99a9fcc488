use vosd::frame::{LabelMask, RgbFrame};
use vosd::source::synthetic::{Scene, SyntheticConfig};
#[test]
fn dump() {
    let dir = std::path::Path::new("/tmp/synth");
    std::fs::create_dir_all(dir.join("frames")).unwrap();
    let seed: u64 = std::env::var("SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1);
    let scene = Scene::new(&SyntheticConfig { seed, ..Default::default() }).unwrap();
    let (mut f, mut m) = (RgbFrame::default(), LabelMask::default());
    for k in 0..200 {
        scene.render(k, Some(&mut f), Some(&mut m));
        vosd::imageio::save_jpeg(&dir.join(format!("frames/{k:05}.jpg")), &f, 95).unwrap();
        if k == 0 { vosd::imageio::save_mask(&dir.join("first.png"), &m).unwrap(); }
        std::fs::create_dir_all(dir.join("davis/Annotations/480p/synth")).unwrap();
        std::fs::create_dir_all(dir.join("davis/JPEGImages/480p/synth")).unwrap();
        vosd::imageio::save_mask(&dir.join(format!("davis/Annotations/480p/synth/{k:05}.png")), &m).unwrap();
        vosd::imageio::save_jpeg(&dir.join(format!("davis/JPEGImages/480p/synth/{k:05}.jpg")), &f, 95).unwrap();
    }
}
#[test]
fn overlay() {
    let dir = std::path::Path::new("/tmp/synth");
    let ks = [0u64, 20, 40, 60, 80, 100, 120, 140];
    let (w, h) = (320u32, 240u32);
    let mut grid = image::RgbImage::new(w * 4, h * 2);
    for (i, k) in ks.iter().enumerate() {
        let f = vosd::imageio::load_rgb(&dir.join(format!("frames/{k:05}.jpg"))).unwrap();
        let m = vosd::imageio::load_mask(&dir.join(format!("out/{k:05}.png"))).unwrap();
        let o = vosd::imageio::render_overlay(&f, &m);
        let img = image::RgbImage::from_raw(w, h, o.data).unwrap();
        image::imageops::replace(&mut grid, &img, ((i % 4) as u32 * w) as i64, ((i / 4) as u32 * h) as i64);
    }
    grid.save(dir.join("grid.png")).unwrap();
}
