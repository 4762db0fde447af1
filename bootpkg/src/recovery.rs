//! Recovery: what the system manifest says about restarting a SIP that ended, what the
//! runner asks the kernel to inject, and the restart decision itself (pure logic, tested
//! here on the host; the kernel's supervisor applies it).
//!
//! A restart policy belongs to one system-manifest entry. After each end of an
//! incarnation the supervisor asks [`History::after_end`]: restart after a delay that
//! doubles with every restart that did not stay up for `min_healthy_ms` (reset by one
//! that did), or give up once `max_restarts` restarts fell within `window_ms`. A crash
//! loop therefore costs at most `max_restarts` incarnations per window, each delayed
//! more than the last, and never starves other SIPs.

use alloc::string::String;
use serde::{Deserialize, Serialize};

/// When an entry is restarted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartMode {
    /// Never: an ended SIP stays ended (the default).
    Never,
    /// After any end but a clean `exit(0)`: a fault, a kill, a non-zero status, a refusal.
    OnFailure,
    /// After every end, clean ones included.
    Always,
}

impl RestartMode {
    pub const ALL: [RestartMode; 3] = [
        RestartMode::Never,
        RestartMode::OnFailure,
        RestartMode::Always,
    ];

    /// The system manifest's spelling.
    pub fn name(self) -> &'static str {
        match self {
            RestartMode::Never => "never",
            RestartMode::OnFailure => "on-failure",
            RestartMode::Always => "always",
        }
    }

    pub fn from_name(name: &str) -> Option<RestartMode> {
        RestartMode::ALL.into_iter().find(|m| m.name() == name)
    }
}

/// The system manifest's restart policy for entry `sip` (index into the package's `sips`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartPolicy {
    pub sip: u32,
    pub mode: RestartMode,
    /// At most this many restarts within `window_ms`; one more end gives up.
    pub max_restarts: u32,
    pub window_ms: u64,
    /// The delay before the first restart, doubled for each further one...
    pub backoff_ms: u64,
    /// ...up to this.
    pub max_backoff_ms: u64,
    /// An incarnation that ran this long was healthy: the delay starts over.
    pub min_healthy_ms: u64,
    /// A watchdog: an incarnation that leaves a message waiting in one of its endpoints
    /// while it makes no kernel call for this long has stopped answering, and is killed
    /// (then restarted like any failure). `None`: no watchdog.
    pub answer_within_ms: Option<u64>,
}

impl RestartPolicy {
    /// Most restarts a policy may allow per window (the history keeps that many times).
    pub const MAX_RESTARTS: u32 = 64;

    /// The defaults for `mode`: 5 restarts a minute, 10 ms doubling to 2 s, healthy after 1 s.
    pub fn new(sip: u32, mode: RestartMode) -> RestartPolicy {
        RestartPolicy {
            sip,
            mode,
            max_restarts: 5,
            window_ms: 60_000,
            backoff_ms: 10,
            max_backoff_ms: 2_000,
            min_healthy_ms: 1_000,
            answer_within_ms: None,
        }
    }

    /// Whether the numbers make sense; the runner and the kernel both check.
    pub fn check(&self) -> Result<(), String> {
        if self.max_restarts > Self::MAX_RESTARTS {
            return Err(alloc::format!(
                "max-restarts = {} is more than {}",
                self.max_restarts,
                Self::MAX_RESTARTS
            ));
        }
        if self.max_backoff_ms < self.backoff_ms {
            return Err(alloc::format!(
                "max-backoff-ms = {} is below backoff-ms = {}",
                self.max_backoff_ms,
                self.backoff_ms
            ));
        }
        if self.window_ms == 0 {
            return Err("window-ms must be more than 0".into());
        }
        if self.answer_within_ms == Some(0) {
            return Err("answer-within-ms must be more than 0".into());
        }
        Ok(())
    }
}

/// What the supervisor does after an incarnation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The policy does not restart after this end.
    Stay,
    /// Restart after `delay_ms`.
    Restart { delay_ms: u64 },
    /// `restarts` restarts already fell within the window: stop restarting, report.
    GiveUp { restarts: u32 },
}

/// One entry's restart history: when its recent restarts happened and how far the
/// backoff has grown. Fixed size: it never allocates.
#[derive(Clone, Copy, Debug)]
pub struct History {
    /// Times (ms) of the restarts decided, oldest first; `len` of them are valid.
    times: [u64; RestartPolicy::MAX_RESTARTS as usize],
    len: usize,
    /// Restarts since the last healthy incarnation (the backoff's exponent).
    unhealthy: u32,
    gave_up: bool,
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

impl History {
    pub const fn new() -> History {
        History {
            times: [0; RestartPolicy::MAX_RESTARTS as usize],
            len: 0,
            unhealthy: 0,
            gave_up: false,
        }
    }

    /// Whether the supervisor gave up on this entry.
    pub fn gave_up(&self) -> bool {
        self.gave_up
    }

    /// The supervisor gave up for a reason of its own (a restart that could not be made):
    /// no further restarts.
    pub fn give_up(&mut self) {
        self.gave_up = true;
    }

    /// Restarts decided so far that still fall within the window ending at `now_ms`.
    pub fn recent(&self, policy: &RestartPolicy, now_ms: u64) -> u32 {
        self.times[..self.len]
            .iter()
            .filter(|&&t| now_ms.saturating_sub(t) < policy.window_ms)
            .count() as u32
    }

    /// An incarnation ended at `now_ms` after running `ran_ms`, `failed` unless it exited
    /// with status 0. Records the restart it decides.
    pub fn after_end(
        &mut self,
        policy: &RestartPolicy,
        now_ms: u64,
        ran_ms: u64,
        failed: bool,
    ) -> Decision {
        let wanted = match policy.mode {
            RestartMode::Never => false,
            RestartMode::OnFailure => failed,
            RestartMode::Always => true,
        };
        if !wanted || self.gave_up {
            return Decision::Stay;
        }
        let recent = self.recent(policy, now_ms);
        if recent >= policy.max_restarts {
            self.gave_up = true;
            return Decision::GiveUp { restarts: recent };
        }
        if ran_ms >= policy.min_healthy_ms {
            self.unhealthy = 0;
        }
        // backoff × 2^unhealthy, saturating.
        let delay_ms = if self.unhealthy < policy.backoff_ms.leading_zeros() {
            policy.backoff_ms << self.unhealthy
        } else {
            u64::MAX
        }
        .min(policy.max_backoff_ms);
        self.unhealthy = self.unhealthy.saturating_add(1);
        // Keep the times within the window, newest last.
        let mut kept = 0;
        for i in 0..self.len {
            if now_ms.saturating_sub(self.times[i]) < policy.window_ms {
                self.times[kept] = self.times[i];
                kept += 1;
            }
        }
        self.len = kept;
        if self.len == self.times.len() {
            self.times.copy_within(1.., 0);
            self.len -= 1;
        }
        self.times[self.len] = now_ms;
        self.len += 1;
        Decision::Restart { delay_ms }
    }
}

/// What the runner's `--inject` asks the kernel to do to a SIP.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum InjectKind {
    /// End it as a fault at the kernel call.
    Crash,
    /// Stop it there: the call never returns (until the SIP is killed). A policy's
    /// `answer-within-ms` watchdog finds it.
    Hang,
}

impl InjectKind {
    pub fn name(self) -> &'static str {
        match self {
            InjectKind::Crash => "crash",
            InjectKind::Hang => "hang",
        }
    }
}

/// `--inject crash:SIP:N` or `hang:SIP:N`: at the `at`-th kernel call made by SIPs called `sip`, counted
/// across incarnations (1 = the first call), fires once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Injection {
    pub kind: InjectKind,
    pub sip: String,
    pub at: u64,
}

impl Injection {
    /// Parses `crash:SIP:N` or `hang:SIP:N`.
    pub fn parse(text: &str) -> Result<Injection, String> {
        let usage = "expected crash:SIP:N or hang:SIP:N (N: the kernel call, counted from 1)";
        let mut parts = text.splitn(3, ':');
        let (Some(kind), Some(sip), Some(at)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(alloc::format!("`{text}`: {usage}"));
        };
        let kind = match kind {
            "crash" => InjectKind::Crash,
            "hang" => InjectKind::Hang,
            other => return Err(alloc::format!("`{text}`: no fault kind `{other}`; {usage}")),
        };
        if sip.is_empty() {
            return Err(alloc::format!("`{text}`: no SIP named; {usage}"));
        }
        let at = match at.parse::<u64>() {
            Ok(n) if n > 0 => n,
            _ => {
                return Err(alloc::format!(
                    "`{text}`: `{at}` is not a call number ≥ 1; {usage}"
                ));
            }
        };
        Ok(Injection {
            kind,
            sip: sip.into(),
            at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: RestartMode) -> RestartPolicy {
        RestartPolicy {
            max_restarts: 3,
            window_ms: 1_000,
            backoff_ms: 10,
            max_backoff_ms: 50,
            min_healthy_ms: 200,
            ..RestartPolicy::new(0, mode)
        }
    }

    #[test]
    fn modes_choose_which_ends_restart() {
        let mut h = History::new();
        assert_eq!(
            h.after_end(&policy(RestartMode::Never), 0, 0, true),
            Decision::Stay
        );
        let on_failure = policy(RestartMode::OnFailure);
        assert_eq!(h.after_end(&on_failure, 0, 0, false), Decision::Stay);
        assert_eq!(
            h.after_end(&on_failure, 0, 0, true),
            Decision::Restart { delay_ms: 10 }
        );
        let mut h = History::new();
        assert_eq!(
            h.after_end(&policy(RestartMode::Always), 0, 0, false),
            Decision::Restart { delay_ms: 10 }
        );
    }

    #[test]
    fn a_crash_loop_backs_off_then_gives_up_within_the_window() {
        let p = policy(RestartMode::OnFailure);
        let mut h = History::new();
        let delays: alloc::vec::Vec<_> = (0..3).map(|i| h.after_end(&p, i * 10, 1, true)).collect();
        assert_eq!(
            delays,
            [10, 20, 40].map(|delay_ms| Decision::Restart { delay_ms })
        );
        assert_eq!(
            h.after_end(&p, 40, 1, true),
            Decision::GiveUp { restarts: 3 }
        );
        assert!(h.gave_up());
        // Once given up, never again.
        assert_eq!(h.after_end(&p, 10_000, 1, true), Decision::Stay);
    }

    #[test]
    fn the_backoff_is_capped_and_a_healthy_run_resets_it() {
        let p = RestartPolicy {
            max_restarts: 10,
            ..policy(RestartMode::Always)
        };
        let mut h = History::new();
        let mut last = 0;
        for i in 0..5 {
            if let Decision::Restart { delay_ms } = h.after_end(&p, i, 0, true) {
                last = delay_ms;
            }
        }
        assert_eq!(last, 50, "capped at max-backoff-ms");
        assert_eq!(
            h.after_end(&p, 10, 500, true),
            Decision::Restart { delay_ms: 10 },
            "an incarnation that stayed up past min-healthy-ms starts the backoff over"
        );
    }

    #[test]
    fn restarts_outside_the_window_no_longer_count() {
        let p = policy(RestartMode::OnFailure);
        let mut h = History::new();
        for i in 0..3 {
            assert!(matches!(
                h.after_end(&p, i, 0, true),
                Decision::Restart { .. }
            ));
        }
        assert_eq!(h.recent(&p, 500), 3);
        assert_eq!(h.recent(&p, 2_000), 0);
        assert!(matches!(
            h.after_end(&p, 2_000, 0, true),
            Decision::Restart { .. }
        ));
    }

    #[test]
    fn a_huge_backoff_exponent_saturates_at_the_cap() {
        let p = RestartPolicy {
            max_restarts: 64,
            window_ms: 1,
            backoff_ms: 1,
            max_backoff_ms: u64::MAX,
            ..policy(RestartMode::Always)
        };
        let mut h = History::new();
        let mut last = Decision::Stay;
        for i in 0..70u64 {
            last = h.after_end(&p, i * 10, 0, true);
        }
        assert_eq!(last, Decision::Restart { delay_ms: u64::MAX });
    }

    #[test]
    fn policies_with_impossible_numbers_are_refused() {
        let mut p = policy(RestartMode::Always);
        assert_eq!(p.check(), Ok(()));
        p.max_restarts = 65;
        assert!(p.check().unwrap_err().contains("more than 64"));
        p.max_restarts = 1;
        p.max_backoff_ms = 1;
        assert!(p.check().unwrap_err().contains("below backoff-ms"));
    }

    #[test]
    fn injections_parse_or_say_what_is_wrong() {
        assert_eq!(
            Injection::parse("crash:fs:300"),
            Ok(Injection {
                kind: InjectKind::Crash,
                sip: "fs".into(),
                at: 300
            })
        );
        assert_eq!(
            Injection::parse("hang:virtio-blk:1").unwrap().kind,
            InjectKind::Hang
        );
        assert!(
            Injection::parse("crash:fs")
                .unwrap_err()
                .contains("expected crash:SIP:N")
        );
        assert!(
            Injection::parse("melt:fs:3")
                .unwrap_err()
                .contains("no fault kind `melt`")
        );
        assert!(
            Injection::parse("crash:fs:0")
                .unwrap_err()
                .contains("not a call number")
        );
        assert!(
            Injection::parse("crash::3")
                .unwrap_err()
                .contains("no SIP named")
        );
    }
}
