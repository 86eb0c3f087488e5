//! Scripted touch source: a thread-safe queue of touches. Tests push taps
//! into it; the emulator page pushes the clicks it receives.

use crate::error::UiError;
use crate::touch::{Touch, TouchEvent};
use crate::trace::TraceButton;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

struct Queue {
    events: Mutex<VecDeque<TouchEvent>>,
    ready: Condvar,
}

/// The [`Touch`] side, handed to the UI.
pub struct ScriptedTouch {
    q: Arc<Queue>,
}

/// The writing side: clone it freely, use it from any thread.
#[derive(Clone)]
pub struct TouchScript {
    q: Arc<Queue>,
}

impl ScriptedTouch {
    /// An empty source and the script that feeds it.
    #[allow(clippy::new_ret_no_self)]
    pub fn new() -> (ScriptedTouch, TouchScript) {
        let q = Arc::new(Queue {
            events: Mutex::new(VecDeque::new()),
            ready: Condvar::new(),
        });
        (ScriptedTouch { q: q.clone() }, TouchScript { q })
    }

    /// A source that plays `events` and then stays silent.
    pub fn from_events(events: impl IntoIterator<Item = TouchEvent>) -> ScriptedTouch {
        let (t, s) = Self::new();
        for e in events {
            s.push(e);
        }
        t
    }
}

impl TouchScript {
    pub fn push(&self, e: TouchEvent) {
        let mut q = self.q.events.lock().unwrap_or_else(|e| e.into_inner());
        q.push_back(e);
        self.q.ready.notify_all();
    }

    /// Press and release at (`x`, `y`).
    pub fn tap(&self, x: u32, y: u32) {
        self.push(TouchEvent::Down { x, y });
        self.push(TouchEvent::Up { x, y });
    }

    /// Tap the centre of a button from the screen trace.
    pub fn tap_button(&self, b: &TraceButton) {
        let (x, y) = b.center();
        self.tap(x, y);
    }

    /// Events not yet consumed.
    pub fn pending(&self) -> usize {
        self.q
            .events
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }
}

impl Touch for ScriptedTouch {
    fn poll(&mut self, timeout: Duration) -> Result<Vec<TouchEvent>, UiError> {
        let mut q = self.q.events.lock().unwrap_or_else(|e| e.into_inner());
        if q.is_empty() && !timeout.is_zero() {
            q = match self.q.ready.wait_timeout(q, timeout) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        Ok(q.drain(..).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taps_arrive_in_order() {
        let (mut t, s) = ScriptedTouch::new();
        assert!(t.poll(Duration::ZERO).unwrap().is_empty());
        s.tap(3, 4);
        assert_eq!(s.pending(), 2);
        assert_eq!(
            t.poll(Duration::from_millis(10)).unwrap(),
            vec![
                TouchEvent::Down { x: 3, y: 4 },
                TouchEvent::Up { x: 3, y: 4 }
            ]
        );
    }

    #[test]
    fn poll_waits_for_another_thread() {
        let (mut t, s) = ScriptedTouch::new();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            s.tap(1, 1);
        });
        let mut got = Vec::new();
        for _ in 0..100 {
            got.extend(t.poll(Duration::from_millis(50)).unwrap());
            if got.len() == 2 {
                break;
            }
        }
        h.join().unwrap();
        assert_eq!(got.len(), 2);
    }
}
