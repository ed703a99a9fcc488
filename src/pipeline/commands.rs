//! Changes to the tracked objects while the pipeline runs: the
//! [`ObjectCommand`]s the control socket sends through a
//! [`PipelineControl`], queued as [`EngineRequest`]s and applied by the
//! segment stage between two frames.

use std::sync::atomic::Ordering;
use std::time::Duration;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use vosd_engine::frame::{LabelMask, RgbFrame};

use super::segment::{SegmentError, Segmenter};
use super::stats::Stats;

/// A change to the tracked objects or to the engine's state, sent by the
/// control socket and applied by the engine stage between two frames.
#[derive(Debug)]
pub enum ObjectCommand {
    /// Sets object `object`'s mask in the current frame: adds it
    /// (`correct = false`, must not be tracked) or corrects it
    /// (`correct = true`, must be tracked).
    SetMask {
        /// Object id.
        object: u8,
        /// Its mask or a box to derive it from.
        mask: ObjectMask,
        /// A correction of a tracked object rather than a new one.
        correct: bool,
    },
    /// Stops tracking one object.
    Remove {
        /// Object id.
        object: u8,
    },
    /// Stops tracking every object (empty masks are published).
    RemoveAll,
    /// Stops segmenting and publishing; frames are dropped.
    Pause,
    /// Segments and publishes again.
    Resume,
}

/// An object's mask as the control socket received it.
#[derive(Debug)]
pub enum ObjectMask {
    /// A label mask of the frame's size; the pixels equal to the object id
    /// are the object.
    Mask(LabelMask),
    /// A bounding box `[x, y, width, height]` (frame pixels): the segmenter
    /// derives the mask from the image.
    Box([u32; 4]),
}

/// A command with the channel its outcome goes back on.
#[derive(Debug)]
pub struct EngineRequest {
    /// What to do.
    pub command: ObjectCommand,
    /// Where the outcome goes (`Err` carries the reason).
    pub reply: Sender<Result<(), String>>,
}

/// Pending commands the engine stage holds at most (more are refused).
const COMMAND_QUEUE: usize = 16;

/// Sends [`ObjectCommand`]s to a running pipeline's engine stage.
#[derive(Clone, Debug)]
pub struct PipelineControl {
    tx: Sender<EngineRequest>,
}

impl PipelineControl {
    /// A control handle and the queue its requests arrive on (for the
    /// segment stage).
    pub(super) fn channel() -> (PipelineControl, Receiver<EngineRequest>) {
        let (tx, rx) = bounded(COMMAND_QUEUE);
        (PipelineControl { tx }, rx)
    }

    /// Queues `command` and waits up to `timeout` for the engine's answer
    /// (commands are applied between frames, so this takes up to one
    /// engine step). Never blocks the pipeline.
    pub fn request(&self, command: ObjectCommand, timeout: Duration) -> Result<(), String> {
        let (reply, answer) = bounded(1);
        self.tx
            .try_send(EngineRequest { command, reply })
            .map_err(|e| match e {
                TrySendError::Full(_) => {
                    "the engine has too many pending commands; retry".to_string()
                }
                TrySendError::Disconnected(_) => "the pipeline has stopped".to_string(),
            })?;
        answer.recv_timeout(timeout).map_err(|_| {
            format!(
                "no answer from the engine within {:.1} s",
                timeout.as_secs_f64()
            )
        })?
    }
}

/// Applies one command to `segmenter` with `frame` as the current frame
/// (`None`: no frame at hand, only frame-less commands can be applied).
fn apply_command(
    segmenter: &mut dyn Segmenter,
    frame: Option<&RgbFrame>,
    paused: &mut bool,
    command: ObjectCommand,
) -> Result<(), String> {
    let err = |e: SegmentError| e.to_string();
    match command {
        ObjectCommand::Pause => *paused = true,
        ObjectCommand::Resume => *paused = false,
        ObjectCommand::Remove { object } => segmenter.remove_object(object).map_err(err)?,
        ObjectCommand::RemoveAll => {
            for id in segmenter.object_ids().to_vec() {
                segmenter.remove_object(id).map_err(err)?;
            }
        }
        ObjectCommand::SetMask {
            object,
            mask,
            correct,
        } => {
            if *paused {
                return Err("paused: resume before adding or correcting objects".into());
            }
            let Some(frame) = frame else {
                return Err(
                    "no frame arrived to apply the mask to (is the source running?)".into(),
                );
            };
            let tracked = segmenter.object_ids().contains(&object);
            if correct && !tracked {
                return Err(format!("object {object} is not tracked (use add)"));
            }
            if !correct && tracked {
                return Err(format!("object {object} is already tracked (use correct)"));
            }
            let mask = match mask {
                ObjectMask::Mask(m) => m,
                ObjectMask::Box(b) => segmenter.mask_from_box(frame, object, b).map_err(err)?,
            };
            segmenter
                .set_object_mask(frame, object, &mask)
                .map_err(err)?;
        }
    }
    Ok(())
}

/// Applies every queued command (see [`apply_command`]), answers each, and
/// publishes the paused flag in the stats.
pub(super) fn apply_commands(
    commands: &Receiver<EngineRequest>,
    segmenter: &mut dyn Segmenter,
    frame: Option<&RgbFrame>,
    paused: &mut bool,
    stats: &Stats,
) {
    while let Ok(req) = commands.try_recv() {
        let outcome = apply_command(segmenter, frame, paused, req.command);
        let _ = req.reply.try_send(outcome);
    }
    stats.paused.store(*paused, Ordering::Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tracks ids; a set mask adds its id, without a box prompt.
    struct Ids(Vec<u8>);

    impl Segmenter for Ids {
        fn start(&mut self, _f: &RgbFrame, _m: &LabelMask) -> Result<(), SegmentError> {
            Ok(())
        }
        fn step(&mut self, _f: &RgbFrame, _out: &mut LabelMask) -> Result<(), SegmentError> {
            Ok(())
        }
        fn object_ids(&self) -> &[u8] {
            &self.0
        }
        fn set_object_mask(
            &mut self,
            _f: &RgbFrame,
            id: u8,
            _m: &LabelMask,
        ) -> Result<(), SegmentError> {
            if !self.0.contains(&id) {
                self.0.push(id);
            }
            Ok(())
        }
        fn remove_object(&mut self, id: u8) -> Result<(), SegmentError> {
            self.0.retain(|&i| i != id);
            Ok(())
        }
    }

    fn set(object: u8, mask: ObjectMask, correct: bool) -> ObjectCommand {
        ObjectCommand::SetMask {
            object,
            mask,
            correct,
        }
    }

    /// A segmenter and the queue of commands to it.
    struct Harness {
        control: PipelineControl,
        queue: Receiver<EngineRequest>,
        seg: Ids,
        paused: bool,
        stats: Stats,
    }

    impl Harness {
        /// Queues `commands`, applies them and returns their answers.
        fn run(
            &mut self,
            commands: Vec<ObjectCommand>,
            frame: Option<&RgbFrame>,
        ) -> Vec<Result<(), String>> {
            let answers: Vec<_> = commands
                .into_iter()
                .map(|command| {
                    let (reply, answer) = bounded(1);
                    let req = EngineRequest { command, reply };
                    self.control.tx.try_send(req).unwrap();
                    answer
                })
                .collect();
            let (seg, paused) = (&mut self.seg, &mut self.paused);
            apply_commands(&self.queue, seg, frame, paused, &self.stats);
            answers
                .iter()
                .map(|a| a.try_recv().expect("answered"))
                .collect()
        }
    }

    #[test]
    fn commands_are_applied_in_order_and_answered() {
        let (control, queue) = PipelineControl::channel();
        let mut h = Harness {
            control,
            queue,
            seg: Ids(vec![1]),
            paused: false,
            stats: Stats::new(16),
        };
        let frame = RgbFrame::new(4, 4);
        let mask = || ObjectMask::Mask(LabelMask::new(4, 4));
        let got = h.run(vec![set(2, mask(), false)], None);
        assert_eq!(
            got,
            vec![Err(
                "no frame arrived to apply the mask to (is the source running?)".into()
            )]
        );
        let got = h.run(
            vec![ObjectCommand::Pause, set(2, mask(), false)],
            Some(&frame),
        );
        assert_eq!(
            got,
            vec![
                Ok(()),
                Err("paused: resume before adding or correcting objects".into())
            ]
        );
        assert!(h.stats.paused.load(Ordering::Relaxed));
        let got = h.run(
            vec![
                ObjectCommand::Resume,
                set(2, mask(), false),
                set(2, mask(), false),
                set(5, mask(), true),
                set(3, ObjectMask::Box([0, 0, 2, 2]), false),
                set(1, mask(), true),
            ],
            Some(&frame),
        );
        assert_eq!(
            got,
            vec![
                Ok(()),
                Ok(()),
                Err("object 2 is already tracked (use correct)".into()),
                Err("object 5 is not tracked (use add)".into()),
                Err("this segmenter has no box prompt".into()),
                Ok(()),
            ]
        );
        assert!(!h.stats.paused.load(Ordering::Relaxed));
        let got = h.run(vec![ObjectCommand::Remove { object: 1 }], None);
        assert_eq!(got, vec![Ok(())]);
        assert_eq!(h.seg.0, vec![2]);
        let got = h.run(vec![ObjectCommand::RemoveAll], None);
        assert_eq!(got, vec![Ok(())]);
        assert!(h.seg.0.is_empty());
    }

    #[test]
    fn a_full_queue_or_a_stopped_pipeline_is_refused() {
        let (control, queue) = PipelineControl::channel();
        let quick = Duration::from_millis(1);
        let e = control.request(ObjectCommand::Pause, quick).unwrap_err();
        assert_eq!(e, "no answer from the engine within 0.0 s");
        for _ in 1..COMMAND_QUEUE {
            let _ = control.request(ObjectCommand::Pause, quick);
        }
        let e = control.request(ObjectCommand::Pause, quick).unwrap_err();
        assert_eq!(e, "the engine has too many pending commands; retry");
        drop(queue);
        let e = control.request(ObjectCommand::Resume, quick).unwrap_err();
        assert_eq!(e, "the pipeline has stopped");
    }
}
