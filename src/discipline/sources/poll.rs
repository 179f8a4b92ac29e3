//! When one polled address is asked next, sans IO. Its first poll goes out at once; each next
//! one the core's interval later (minpoll..maxpoll and iburst: [`PollControl`]) times 2^backoff
//! from RATE kisses, plus up to [`POLL_JITTER`] of random delay so sources polled together
//! drift apart, counted from the send time of the poll just completed. One request is in flight
//! at a time and is given up at its deadline. Consecutive bad polls are counted so that a pool
//! can replace a member that stays unreachable or a falseticker.
//!
//! Every method takes the instant (and the random draw) it is about, so the tests run on
//! virtual time.
//!
//! [`PollControl`]: crate::discipline::PollControl

use std::time::{Duration, Instant};

use crate::discipline::SourceState;
use crate::proto::{NtpTimestamp, UnixNanos};

/// Longest wait for a reply, seconds (shorter for short poll intervals).
pub const MAX_REPLY_WAIT: f64 = 1.0;
/// Shortest wait for a reply, seconds.
pub const MIN_REPLY_WAIT: f64 = 0.01;
/// The wait for a reply as a share of the poll interval.
pub const REPLY_WAIT_SHARE: f64 = 0.75;
/// Largest random delay added to a poll interval, as a share of it.
pub const POLL_JITTER: f64 = 0.05;
/// Highest poll exponent a RATE kiss can push a source to.
pub const MAX_BACKOFF_POLL: i8 = 17;
/// Consecutive bad polls (unreachable or falseticker) after which an address is worn out (a
/// pool replaces it).
pub const REPLACE_AFTER_POLLS: u32 = 8;

/// The request in flight.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InFlight {
    /// The random transmit timestamp (RFC 9109) the reply must echo as its origin.
    pub nonce: NtpTimestamp,
    /// Raw (OS) clock just before the send.
    pub t1: UnixNanos,
    pub sent: Instant,
    pub deadline: Instant,
}

/// What was counted for the report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PollCounts {
    pub requests: u64,
    pub replies: u64,
    pub kod_rate: u64,
}

/// The polling state of one address.
#[derive(Clone, Debug)]
pub struct PollState {
    next_poll: Instant,
    in_flight: Option<InFlight>,
    /// Extra poll exponent from RATE kisses.
    backoff: i8,
    /// The core's state for it at the last update (None before the first).
    state: Option<SourceState>,
    /// Consecutive completed polls while that state was unreachable or falseticker.
    bad_polls: u32,
    counts: PollCounts,
}

impl PollState {
    /// A new address, first polled at `now`.
    pub fn new(now: Instant) -> PollState {
        PollState {
            next_poll: now,
            in_flight: None,
            backoff: 0,
            state: None,
            bad_polls: 0,
            counts: PollCounts::default(),
        }
    }

    /// Is a request due at `now` (none in flight, and its time has come)?
    pub fn due(&self, now: Instant) -> bool {
        self.in_flight.is_none() && now >= self.next_poll
    }

    /// When it next needs attention: the deadline of the request in flight, else the next poll.
    pub fn next_due(&self) -> Instant {
        self.in_flight.map_or(self.next_poll, |r| r.deadline)
    }

    /// The poll interval, seconds, for the core's `core_interval`: that times 2^backoff.
    pub fn interval(&self, core_interval: f64) -> f64 {
        core_interval * 2f64.powi(self.backoff.into())
    }

    /// How long a reply to a poll every `interval` seconds is waited for.
    pub fn reply_wait(interval: f64) -> Duration {
        Duration::from_secs_f64((interval * REPLY_WAIT_SHARE).clamp(MIN_REPLY_WAIT, MAX_REPLY_WAIT))
    }

    /// A request carrying `nonce` went out at `now`, the raw clock reading `t1` just before;
    /// the core's interval for the source is `core_interval` seconds.
    pub fn sent(&mut self, nonce: NtpTimestamp, t1: UnixNanos, now: Instant, core_interval: f64) {
        self.counts.requests += 1;
        let wait = Self::reply_wait(self.interval(core_interval));
        self.in_flight = Some(InFlight {
            nonce,
            t1,
            sent: now,
            deadline: now + wait,
        });
    }

    /// Brings the next poll forward to `now` (`sync-now`), unless one is in flight.
    pub fn poll_now(&mut self, now: Instant) {
        if self.in_flight.is_none() {
            self.next_poll = self.next_poll.min(now);
        }
    }

    /// The request in flight.
    pub fn in_flight(&self) -> Option<&InFlight> {
        self.in_flight.as_ref()
    }

    /// Ends the request in flight (answered, kissed or failed) and returns it.
    pub fn take_in_flight(&mut self) -> Option<InFlight> {
        self.in_flight.take()
    }

    /// The send time of the request in flight when its deadline has passed at `now`.
    pub fn overdue(&self, now: Instant) -> Option<Instant> {
        self.in_flight.filter(|r| now >= r.deadline).map(|r| r.sent)
    }

    /// Sets the next poll, counted `from` the send time of the poll just completed, for the
    /// core's `core_interval` seconds; `draw` is uniform in [0, 1) and picks the random delay.
    /// Ends any request in flight.
    pub fn schedule(&mut self, from: Instant, core_interval: f64, draw: f64) {
        let secs = self.interval(core_interval) * (1.0 + POLL_JITTER * draw);
        self.next_poll = from + Duration::from_secs_f64(secs);
        self.in_flight = None;
    }

    /// A reply came (usable or not).
    pub fn replied(&mut self) {
        self.counts.replies += 1;
    }

    /// A RATE kiss while the core polls at exponent `poll`: the interval doubles, as long as
    /// the result stays below 2^[`MAX_BACKOFF_POLL`] s.
    pub fn rate_kiss(&mut self, poll: i8) {
        self.counts.kod_rate += 1;
        if poll + self.backoff < MAX_BACKOFF_POLL {
            self.backoff += 1;
        }
    }

    /// Extra poll exponent from RATE kisses.
    pub fn backoff(&self) -> i8 {
        self.backoff
    }

    /// A poll completed (a sample given to the core, or none): it counts as bad while the state
    /// at the last update is unreachable or falseticker, and a good one resets the count.
    pub fn completed(&mut self) {
        let bad = matches!(
            self.state,
            Some(SourceState::Unreachable | SourceState::Falseticker)
        );
        self.bad_polls = if bad { self.bad_polls + 1 } else { 0 };
    }

    /// Takes the core's state at an update; returns the one before (unreachable before the
    /// first update).
    pub fn set_state(&mut self, state: SourceState) -> SourceState {
        let before = self.state.unwrap_or(SourceState::Unreachable);
        self.state = Some(state);
        before
    }

    /// The core's state at the last update (None before the first).
    pub fn state(&self) -> Option<SourceState> {
        self.state
    }

    /// Bad for [`REPLACE_AFTER_POLLS`] polls in a row.
    pub fn worn_out(&self) -> bool {
        self.bad_polls >= REPLACE_AFTER_POLLS
    }

    pub fn counts(&self) -> PollCounts {
        self.counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discipline::filter::{IBURST_COUNT, IBURST_INTERVAL};
    use crate::discipline::testutil::virtual_epoch;
    use crate::discipline::{CoreConfig, Discipline, SourceId, SourceParams};

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn first_poll_at_once_then_one_in_flight_until_answered_or_overdue() {
        let t0 = virtual_epoch();
        let mut p = PollState::new(t0);
        assert!(p.due(t0));
        assert_eq!(p.next_due(), t0);
        p.sent(NtpTimestamp(7), UnixNanos(42), t0, 64.0);
        assert_eq!(p.counts().requests, 1);
        // In flight: not due again, and woken at the deadline (¾ of 64 s, capped at 1 s).
        assert!(!p.due(t0 + secs(100.0)));
        assert_eq!(p.next_due(), t0 + secs(1.0));
        assert_eq!(p.overdue(t0 + secs(0.999)), None);
        assert_eq!(p.overdue(t0 + secs(1.0)), Some(t0));
        let r = *p.in_flight().unwrap();
        assert_eq!(
            (r.nonce, r.t1, r.sent),
            (NtpTimestamp(7), UnixNanos(42), t0)
        );
        // Answered: the next poll is counted from the send, not from the answer.
        assert_eq!(p.take_in_flight(), Some(r));
        p.replied();
        p.schedule(t0, 64.0, 0.0);
        assert_eq!(p.in_flight(), None);
        assert!(!p.due(t0 + secs(63.999)));
        assert!(p.due(t0 + secs(64.0)));
        assert_eq!(p.next_due(), t0 + secs(64.0));
        assert_eq!(p.counts().replies, 1);
    }

    #[test]
    fn the_reply_wait_is_three_quarters_of_the_interval_within_bounds() {
        assert_eq!(PollState::reply_wait(1.0), secs(0.75));
        assert_eq!(PollState::reply_wait(64.0), secs(MAX_REPLY_WAIT));
        assert_eq!(PollState::reply_wait(1.0 / 128.0), secs(MIN_REPLY_WAIT));
        // The wait follows the backed-off interval: 0.5 s × 2 after one RATE kiss.
        let t0 = virtual_epoch();
        let mut p = PollState::new(t0);
        p.rate_kiss(-1);
        p.sent(NtpTimestamp(1), UnixNanos(0), t0, 0.5);
        assert_eq!(p.in_flight().unwrap().deadline, t0 + secs(0.75));
    }

    #[test]
    fn the_random_delay_is_at_most_five_percent_later() {
        let t0 = virtual_epoch();
        let after = |p: &PollState| p.next_due().duration_since(t0).as_secs_f64();
        let mut p = PollState::new(t0);
        p.schedule(t0, 64.0, 0.5);
        assert!((after(&p) - 65.6).abs() < 1e-6, "{}", after(&p));
        p.schedule(t0, 64.0, 0.999_999);
        assert!(after(&p) < 64.0 * 1.05 && after(&p) > 64.0 * 1.0499);
        p.schedule(t0, 64.0, 0.0);
        assert_eq!(after(&p), 64.0);
    }

    #[test]
    fn rate_kisses_double_the_interval_up_to_the_limit() {
        let t0 = virtual_epoch();
        let mut p = PollState::new(t0);
        p.rate_kiss(6);
        p.rate_kiss(6);
        assert_eq!(p.backoff(), 2);
        assert_eq!(p.interval(64.0), 256.0);
        p.schedule(t0, 64.0, 0.0);
        assert_eq!(p.next_due(), t0 + secs(256.0));
        // At poll 15 + 2 = 17 the limit is reached: counted, no further back-off.
        p.rate_kiss(15);
        assert_eq!(p.backoff(), 2);
        p.rate_kiss(14);
        assert_eq!(p.backoff(), 3);
        assert_eq!(p.counts().kod_rate, 4);
    }

    #[test]
    fn bad_polls_in_a_row_wear_an_address_out_and_a_good_one_resets_them() {
        let t0 = virtual_epoch();
        let mut p = PollState::new(t0);
        // Before the first update nothing is known: no count.
        p.completed();
        assert_eq!(
            p.set_state(SourceState::Falseticker),
            SourceState::Unreachable
        );
        for _ in 0..REPLACE_AFTER_POLLS - 1 {
            p.completed();
        }
        assert!(!p.worn_out());
        assert_eq!(
            p.set_state(SourceState::Unreachable),
            SourceState::Falseticker
        );
        p.completed();
        assert!(p.worn_out());
        // One poll while selected (or candidate, outlier) starts the count again.
        p.set_state(SourceState::Outlier);
        p.completed();
        assert!(!p.worn_out());
        p.set_state(SourceState::Unreachable);
        for _ in 0..REPLACE_AFTER_POLLS - 1 {
            p.completed();
        }
        assert!(!p.worn_out());
    }

    /// The poll state driven by the core's intervals as the network driver drives it, with
    /// no reply ever: an iburst source gets its quick polls 2 s apart (each waited for 1 s),
    /// then polls at minpoll; after a RATE kiss at twice that.
    #[test]
    fn iburst_polls_come_quickly_then_at_minpoll() {
        let t0 = virtual_epoch();
        let mut core = Discipline::new(CoreConfig::default());
        let id = SourceId(1);
        core.add_source(
            id,
            SourceParams {
                minpoll: 6,
                maxpoll: 10,
                iburst: true,
                ..SourceParams::default()
            },
        );
        let burst = usize::from(IBURST_COUNT);
        let mut p = PollState::new(t0);
        let mut sends = Vec::new();
        while sends.len() < burst + 2 {
            let now = p.next_due();
            assert!(p.due(now));
            p.sent(
                NtpTimestamp(1),
                UnixNanos(0),
                now,
                core.poll_interval(id).unwrap(),
            );
            sends.push(now.duration_since(t0).as_secs_f64());
            let deadline = p.next_due();
            assert_eq!(deadline - now, secs(MAX_REPLY_WAIT));
            let sent = p.overdue(deadline).unwrap();
            core.on_unreachable(id);
            if sends.len() == burst + 1 {
                // This one is answered by a RATE kiss (not counted as a bad poll).
                p.take_in_flight();
                p.rate_kiss(6);
            } else {
                p.completed();
            }
            p.schedule(sent, core.poll_interval(id).unwrap(), 0.0);
        }
        let quick: Vec<f64> = (0..IBURST_COUNT)
            .map(|k| f64::from(k) * IBURST_INTERVAL)
            .collect();
        assert_eq!(sends[..burst], quick[..]);
        assert_eq!(sends[burst], quick[burst - 1] + 64.0);
        assert_eq!(sends[burst + 1], quick[burst - 1] + 64.0 + 128.0);
    }
}
