//! Long-running actions as jobs whose progress is streamed to the page.
//!
//! A [`Job`] keeps every [`JobEvent`] it produced, so a page that connects
//! late (or reconnects) replays the whole log before following new events.
//! The SSE endpoint (`GET /api/jobs/{id}/events`) sends each event as
//! `event: <kind>` with the JSON of the [`JobEvent`] as data, and ends the
//! stream after the `done` or `failed` event.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::Serialize;
use tokio::sync::watch;

use crate::Error;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One step of a job.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct JobEvent {
    /// `progress`, `log`, `done` or `failed`.
    pub kind: String,
    /// For people.
    pub message: String,
    /// Units done so far (records for a collect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub done: Option<u64>,
    /// Units expected in all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<u64>,
    /// The action's result (on `done`/`failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// Collector time, unix ms.
    pub at_ms: i64,
}

/// A job's summary, for `GET /api/jobs`.
#[derive(Clone, Debug, Serialize)]
pub struct JobInfo {
    /// Job id.
    pub id: u64,
    /// Action (`collect`, `time`, `pair`, ...).
    pub action: String,
    /// Device id or `all`.
    pub target: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// Start time, unix ms.
    pub started_ms: i64,
    /// Last event.
    pub last: Option<JobEvent>,
}

/// A running or finished action.
pub struct Job {
    /// Job id.
    pub id: u64,
    /// Action name.
    pub action: String,
    /// Device id or `all`.
    pub target: String,
    started_ms: i64,
    log: Mutex<Vec<JobEvent>>,
    len: watch::Sender<usize>,
}

impl Job {
    fn push(&self, e: JobEvent) {
        let n = {
            let mut log = lock(&self.log);
            if log
                .last()
                .is_some_and(|l| l.kind == "done" || l.kind == "failed")
            {
                return; // finished jobs stay finished
            }
            log.push(e);
            log.len()
        };
        self.len.send_replace(n);
    }

    fn event(kind: &str, message: String) -> JobEvent {
        JobEvent {
            kind: kind.into(),
            message,
            done: None,
            total: None,
            result: None,
            at_ms: crate::now_ms(),
        }
    }

    /// Reports progress: `done` of `total` units.
    pub fn progress(&self, message: impl Into<String>, done: u64, total: Option<u64>) {
        let mut e = Self::event("progress", message.into());
        e.done = Some(done);
        e.total = total;
        self.push(e);
    }

    /// Adds a line to the job's log.
    pub fn log(&self, message: impl Into<String>) {
        self.push(Self::event("log", message.into()));
    }

    /// Finishes the job successfully.
    pub fn done(&self, message: impl Into<String>, result: serde_json::Value) {
        let mut e = Self::event("done", message.into());
        e.result = Some(result);
        self.push(e);
    }

    /// Finishes the job with an error.
    pub fn failed(&self, message: impl Into<String>, result: Option<serde_json::Value>) {
        let mut e = Self::event("failed", message.into());
        e.result = result;
        self.push(e);
    }

    /// Event `i` of the log, if it exists yet.
    pub fn get(&self, i: usize) -> Option<JobEvent> {
        lock(&self.log).get(i).cloned()
    }

    /// Whether the job finished.
    pub fn finished(&self) -> bool {
        lock(&self.log)
            .last()
            .is_some_and(|l| l.kind == "done" || l.kind == "failed")
    }

    /// A receiver that changes whenever an event is added.
    pub fn subscribe(&self) -> watch::Receiver<usize> {
        self.len.subscribe()
    }

    /// Summary.
    pub fn info(&self) -> JobInfo {
        let log = lock(&self.log);
        let last = log.last().cloned();
        let state = match last.as_ref().map(|l| l.kind.as_str()) {
            Some("done") => "done",
            Some("failed") => "failed",
            _ => "running",
        };
        JobInfo {
            id: self.id,
            action: self.action.clone(),
            target: self.target.clone(),
            state: state.into(),
            started_ms: self.started_ms,
            last,
        }
    }
}

/// Every job of this server run (kept in memory; the newest 200).
#[derive(Default)]
pub struct Jobs {
    next: AtomicU64,
    jobs: Mutex<HashMap<u64, Arc<Job>>>,
}

impl Jobs {
    /// Creates a job, refusing a second running one with the same action
    /// and target (two collects of one device would race on its cursor).
    pub fn create(&self, action: &str, target: &str) -> Result<Arc<Job>, Error> {
        let mut jobs = lock(&self.jobs);
        if let Some(j) = jobs.values().find(|j| {
            j.action == action
                && (j.target == target || j.target == "all" || target == "all")
                && !j.finished()
        }) {
            return Err(Error::Busy(format!(
                "a {action} of {} is already running (job {})",
                j.target, j.id
            )));
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let (len, _) = watch::channel(0);
        let job = Arc::new(Job {
            id,
            action: action.into(),
            target: target.into(),
            started_ms: crate::now_ms(),
            log: Mutex::new(Vec::new()),
            len,
        });
        jobs.insert(id, job.clone());
        if jobs.len() > 200 {
            let mut ids: Vec<u64> = jobs
                .values()
                .filter(|j| j.finished())
                .map(|j| j.id)
                .collect();
            ids.sort_unstable();
            for old in ids.iter().take(jobs.len() - 200) {
                jobs.remove(old);
            }
        }
        Ok(job)
    }

    /// A job by id.
    pub fn get(&self, id: u64) -> Option<Arc<Job>> {
        lock(&self.jobs).get(&id).cloned()
    }

    /// All jobs, newest first.
    pub fn list(&self) -> Vec<JobInfo> {
        let mut v: Vec<JobInfo> = lock(&self.jobs).values().map(|j| j.info()).collect();
        v.sort_by_key(|j| std::cmp::Reverse(j.id));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finished_job_takes_no_more_events_and_frees_its_target() {
        let jobs = Jobs::default();
        let j = jobs.create("collect", "A").unwrap();
        assert!(jobs.create("collect", "A").is_err());
        assert!(jobs.create("collect", "all").is_err());
        assert!(jobs.create("time", "A").is_ok());
        j.progress("x", 1, Some(2));
        j.done("ok", serde_json::json!({}));
        j.log("late");
        assert_eq!(j.get(1).unwrap().kind, "done");
        assert!(j.get(2).is_none());
        assert_eq!(j.info().state, "done");
        assert!(jobs.create("collect", "A").is_ok());
    }
}
