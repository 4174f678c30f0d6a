//! Audit entries of answers that were already given when the audit store could not take
//! them: refusals (and failed TLS handshakes) while PostgreSQL is down or restarting.
//!
//! A signature is never answered without its durable entry, so signatures never come
//! here. A refusal, though, is answered whether or not its entry can be written — the
//! caller must not wait on the audit store to learn "no" — and the soak run (docs/
//! performance.md, "Soak") showed those entries were simply lost during a PostgreSQL
//! restart. They are now kept in memory, in order, and written by a background task as
//! soon as the store takes entries again, each saying in its `reason` that it was
//! recorded late and when it happened. The queue is bounded: beyond
//! [`MAX_DEFERRED`] entries the oldest are kept and the rest counted, and whatever is
//! still queued when the daemon stops is printed to stderr as JSON lines, so an
//! operator can still see it.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::audit::Event;

/// At most this many entries wait in memory. Each waits as its JSON line, one allocation
/// of about 450 bytes for a refusal (an [`Event`] with its strings is about 1.3 KB in a
/// dozen allocations), so a full queue is about 50 MB.
pub const MAX_DEFERRED: usize = 100_000;

/// Entries written per commit when the queue is flushed. One commit for a whole outage's
/// entries (thousands) made the flush itself the daemon's largest allocation — the
/// entries, their encoded lines and the PostgreSQL client's parameter and send buffers,
/// which keep their size for the life of the connection — and the soak run's memory grew
/// after every outage (docs/performance.md, "Soak"). A chunk this size is a few hundred
/// KB, and a few ms of commit.
pub const FLUSH_CHUNK: usize = 256;

/// The entries waiting for the audit store, oldest first, each as its JSON text: an
/// outage's thousands of entries are the daemon's largest allocation, and what malloc
/// keeps of that peak is what its resident size grows by (docs/performance.md, "Soak").
#[derive(Default)]
pub struct Deferred {
    queue: Mutex<VecDeque<Box<str>>>,
    dropped: AtomicU64,
}

impl Deferred {
    /// Keeps `event` for later, noting when it happened and why it could not be written.
    pub fn push(&self, mut event: Event, why: &str) {
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let note = format!("recorded late: happened at {at}; the audit store failed ({why})");
        event.reason = Some(match event.reason.take() {
            Some(r) => format!("{r}; {note}"),
            None => note,
        });
        let Some(text) = compact(&event) else {
            return;
        };
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        if q.len() >= MAX_DEFERRED {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        q.push_back(text);
    }

    /// Everything waiting, oldest first; the queue is left empty.
    pub fn take(&self) -> Vec<Event> {
        self.take_front(usize::MAX)
    }

    /// The `n` oldest entries (fewer if fewer wait). Once the queue is empty its buffer is
    /// released: an outage's worth of entries must not stay reserved until the next one.
    pub fn take_front(&self, n: usize) -> Vec<Event> {
        let front: Vec<Box<str>> = {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            let n = n.min(q.len());
            let front = q.drain(..n).collect();
            if q.is_empty() {
                q.shrink_to_fit();
            }
            front
        };
        front.iter().filter_map(|t| expand(t)).collect()
    }

    /// Puts entries that still could not be written back in front of any that came
    /// since (and of any still waiting), so the order of the log stays the order of the
    /// answers.
    pub fn put_back(&self, events: Vec<Event>) {
        let texts: Vec<Box<str>> = events.iter().filter_map(compact).collect();
        let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        for t in texts.into_iter().rev() {
            q.push_front(t);
        }
        while q.len() > MAX_DEFERRED {
            q.pop_back();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// How many entries wait now.
    pub fn len(&self) -> usize {
        self.queue.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many entries were not kept because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// An entry as the text it waits as. Serialising an `Event` (strings, numbers, a map
/// with string keys) cannot fail; if it ever did, the entry is shown on stderr as the
/// daemon shows entries it could not keep at all.
fn compact(event: &Event) -> Option<Box<str>> {
    match serde_json::to_string(event) {
        Ok(t) => Some(t.into_boxed_str()),
        Err(e) => {
            eprintln!("tufkey serve: an audit entry could not be kept ({e}): {event:?}");
            None
        }
    }
}

/// The entry back from its text (written by [`compact`], so it reads back the same).
fn expand(text: &str) -> Option<Event> {
    match serde_json::from_str(text) {
        Ok(e) => Some(e),
        Err(e) => {
            eprintln!("tufkey serve: a kept audit entry could not be read back ({e}): {text}");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(n: u64) -> Event {
        Event {
            who: "ci".into(),
            action: "sign".into(),
            result: "refused".into(),
            reason: Some("version-not-increasing".into()),
            version: Some(n),
            ..Default::default()
        }
    }

    #[test]
    fn entries_come_back_in_the_order_they_were_answered_and_say_they_are_late() {
        let d = Deferred::default();
        d.push(refusal(1), "connection refused");
        d.push(refusal(2), "connection refused");
        let first = d.take();
        assert!(d.is_empty());
        d.push(refusal(3), "connection refused");
        // The store failed again: the first two go back in front of the third.
        d.put_back(first);
        let all = d.take();
        let versions: Vec<_> = all.iter().map(|e| e.version.unwrap()).collect();
        assert_eq!(versions, [1, 2, 3]);
        let reason = all[0].reason.as_deref().unwrap();
        assert!(reason.starts_with("version-not-increasing; recorded late: happened at "));
        assert!(reason.contains("(connection refused)"), "{reason}");
    }

    #[test]
    fn entries_are_taken_oldest_first_in_chunks_and_the_buffer_is_released_when_empty() {
        let d = Deferred::default();
        for n in 0..1000 {
            d.push(refusal(n), "down");
        }
        let first = d.take_front(300);
        assert_eq!(first.len(), 300);
        assert_eq!(first[0].version, Some(0));
        assert_eq!(first[299].version, Some(299));
        // The next chunk fails: it goes back in front of the 700 still waiting.
        let second = d.take_front(300);
        assert_eq!(second[0].version, Some(300));
        d.put_back(second);
        assert_eq!(d.len(), 700);
        assert_eq!(d.take_front(1)[0].version, Some(300));
        let rest = d.take_front(usize::MAX);
        assert_eq!(rest.len(), 699);
        assert_eq!(rest.last().unwrap().version, Some(999));
        assert!(d.is_empty());
        let cap = d.queue.lock().unwrap().capacity();
        assert!(cap < 1000, "the drained queue still reserves {cap} entries");
    }

    #[test]
    fn an_entry_comes_back_as_it_was_kept_every_field_included() {
        let full = Event {
            who: "ci \"quoted\"\nline".into(),
            action: "sign-batch".into(),
            result: "refused".into(),
            reason: None,
            status: Some(503),
            peer: Some("[::1]:4433".into()),
            repository: Some("repo".into()),
            role: Some("bins-1f".into()),
            version: Some(u64::MAX),
            key_id: Some("ab".repeat(32)),
            payload_sha256: Some("cd".repeat(32)),
            issuer: Some("https://token.actions.githubusercontent.com".into()),
            subject: Some("repo:o/r:ref:refs/heads/main".into()),
            claims: Some([("ref".to_string(), "refs/heads/main".to_string())].into()),
            source: Some("cli".into()),
            user: Some("ü".into()),
            uid: Some(1000),
            host: Some("h".into()),
            file: Some("/x".into()),
            key_uri: Some("pkcs11:token=t;object=o".into()),
            detail: Some("d".into()),
        };
        let d = Deferred::default();
        d.push(full.clone(), "down");
        let mut back = d.take();
        assert_eq!(back.len(), 1);
        // Everything but the note the queue adds comes back equal.
        let reason = back[0].reason.take().unwrap();
        assert!(
            reason.starts_with("recorded late: happened at "),
            "{reason}"
        );
        assert_eq!(back[0], full);
    }

    #[test]
    fn a_full_queue_counts_what_it_could_not_keep() {
        let d = Deferred::default();
        for n in 0..(MAX_DEFERRED as u64 + 3) {
            d.push(refusal(n), "down");
        }
        assert_eq!(d.len(), MAX_DEFERRED);
        assert_eq!(d.dropped(), 3);
        // The oldest are kept.
        assert_eq!(d.take()[0].version, Some(0));
    }
}
