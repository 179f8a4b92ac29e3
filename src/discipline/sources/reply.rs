//! What one reply to a poll means, sans IO. It must echo the request's random transmit
//! timestamp as its origin (anything else is stale or forged and ignored); then it is a
//! kiss-o'-death, or not usable ([`check_reply`]: mode 4, version, LI ≠ 3, stratum, ordered
//! timestamps), or a reply whose stratum (1..=15) or root distance (the core's `max_distance`)
//! keeps it out of selection, or a sample. t1 and t4 are raw OS readings, converted to
//! free-running time before the sample is made, and a sample near a leap second is not used;
//! both come from the runner's [`Timebase`].

use crate::discipline::Sample;
use crate::proto::client::{check_reply, exchange, root_distance_secs, ReplyError};
use crate::proto::{NtpTimestamp, UnixNanos};

use super::poll::InFlight;
use super::Timebase;

/// The NTP version we send (and expect back).
pub const VERSION: u8 = 4;

/// What a reply is.
#[derive(Clone, Debug, PartialEq)]
pub enum Judged {
    /// Not the answer to the request in flight: keep waiting.
    Stale,
    /// A kiss-o'-death with this code.
    Kiss([u8; 4]),
    /// Not a usable reply: the poll failed.
    Rejected(ReplyError),
    /// A reply whose stratum or root distance (seconds) keeps it out: the poll failed.
    TooFar(f64),
    /// A reply within the guard around a leap second: the poll is done, the sample not used.
    NearLeap,
    /// A sample for the core (its offset corrected for leap seconds past).
    Sample(Sample),
}

impl Judged {
    /// Counted as a reply in the report (it passed [`check_reply`]).
    pub fn is_reply(&self) -> bool {
        matches!(
            self,
            Judged::TooFar(_) | Judged::NearLeap | Judged::Sample(_)
        )
    }
}

/// Judges `datagram`, received at raw OS time `t4`, as the answer to `request`; replies
/// farther than `max_distance` seconds are not used.
pub fn judge(
    datagram: &[u8],
    request: &InFlight,
    t4: UnixNanos,
    timebase: &dyn Timebase,
    max_distance: f64,
) -> Judged {
    let header = match check_reply(datagram, VERSION, request.nonce) {
        Ok(h) => h,
        Err(ReplyError::WrongOrigin) => return Judged::Stale,
        Err(ReplyError::Kiss(code)) => return Judged::Kiss(code),
        Err(e) => return Judged::Rejected(e),
    };
    let (t1, t4) = (timebase.free(request.t1), timebase.free(t4));
    let mut ex = exchange(&header, NtpTimestamp::from_unix(t4));
    ex.t1 = NtpTimestamp::from_unix(t1);
    let mut sample = Sample::from_reply(&header, &ex, t4);
    let distance = root_distance_secs(&header, sample.delay);
    if !(1..=15).contains(&header.stratum) || distance > max_distance {
        return Judged::TooFar(distance);
    }
    match timebase.leap_fix(t4) {
        None => Judged::NearLeap,
        Some(fix) => {
            sample.offset += fix;
            Judged::Sample(sample)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::discipline::testutil::virtual_epoch;
    use crate::proto::{Header, Leap, Mode, NtpShort};

    /// Raw OS time of the send.
    const T1: UnixNanos = UnixNanos(1_700_000_000_000_000_000);
    const NONCE: NtpTimestamp = NtpTimestamp(0x1234_5678_9abc_def0);

    /// Free time runs `shift` behind the OS clock; samples at or after `leap_at` get +1 s,
    /// those within 2 s of it none.
    struct Fixed {
        shift_ns: i64,
        leap_at: Option<UnixNanos>,
    }

    impl Timebase for Fixed {
        fn free(&self, os: UnixNanos) -> UnixNanos {
            os.add_nanos(-self.shift_ns)
        }
        fn leap_fix(&self, at: UnixNanos) -> Option<f64> {
            match self.leap_at {
                Some(l) if at.nanos_since(l).abs() < 2_000_000_000 => None,
                Some(l) if at.nanos_since(l) >= 0 => Some(1.0),
                _ => Some(0.0),
            }
        }
    }

    const PLAIN: Fixed = Fixed {
        shift_ns: 0,
        leap_at: None,
    };

    fn request() -> InFlight {
        let t0 = virtual_epoch();
        InFlight {
            nonce: NONCE,
            t1: T1,
            sent: t0,
            deadline: t0,
        }
    }

    /// A server 0.25 s ahead that answers in 10 ms (so t4 = t1 + 10 ms).
    fn reply() -> Header {
        let server = |ms: i64| NtpTimestamp::from_unix(T1.add_nanos(250_000_000 + ms * 1_000_000));
        Header {
            leap: Leap::NoWarning,
            version: VERSION,
            mode: Mode::Server,
            stratum: 2,
            poll: 6,
            precision: -20,
            root_delay: NtpShort::from_secs_f64(0.02),
            root_dispersion: NtpShort::from_secs_f64(0.01),
            reference_id: [192, 0, 2, 1],
            reference_ts: server(0),
            origin_ts: NONCE,
            receive_ts: server(5),
            transmit_ts: server(5),
        }
    }

    fn t4() -> UnixNanos {
        T1.add_nanos(10_000_000)
    }

    fn judged(h: Header, tb: &Fixed) -> Judged {
        judge(&h.to_bytes(), &request(), t4(), tb, 1.5)
    }

    fn sample(j: Judged) -> Sample {
        match j {
            Judged::Sample(s) => s,
            other => panic!("not a sample: {other:?}"),
        }
    }

    #[test]
    fn a_good_reply_is_a_sample_on_free_time() {
        let s = sample(judged(reply(), &PLAIN));
        assert!((s.offset - 0.25).abs() < 1e-6, "{}", s.offset);
        assert!((s.delay - 0.01).abs() < 1e-6, "{}", s.delay);
        assert_eq!(s.at, t4());
        assert_eq!((s.stratum, s.refid), (2, [192, 0, 2, 1]));
        // In system mode both t1 and t4 are read back to free time: with the OS clock 0.1 s
        // behind free time, the source is 0.1 s less ahead of the free clock.
        let s = sample(judged(
            reply(),
            &Fixed {
                shift_ns: -100_000_000,
                leap_at: None,
            },
        ));
        assert!((s.offset - 0.15).abs() < 1e-6, "{}", s.offset);
        assert!((s.delay - 0.01).abs() < 1e-6, "{}", s.delay);
        assert_eq!(s.at, t4().add_nanos(100_000_000));
    }

    #[test]
    fn stale_kissed_and_unusable_replies() {
        let mut h = reply();
        h.origin_ts = NtpTimestamp(NONCE.0 + 1);
        assert_eq!(judged(h, &PLAIN), Judged::Stale);
        let mut h = reply();
        h.stratum = 0;
        h.reference_id = *b"RATE";
        assert_eq!(judged(h, &PLAIN), Judged::Kiss(*b"RATE"));
        let mut h = reply();
        h.leap = Leap::Unsynchronized;
        let j = judged(h, &PLAIN);
        assert_eq!(j, Judged::Rejected(ReplyError::Unsynchronized));
        assert!(!j.is_reply());
        let mut h = reply();
        h.mode = Mode::Client;
        assert_eq!(
            judged(h, &PLAIN),
            Judged::Rejected(ReplyError::WrongMode(3))
        );
    }

    #[test]
    fn a_reply_too_far_away_is_counted_but_not_used() {
        let mut h = reply();
        h.root_dispersion = NtpShort::from_secs_f64(1.49);
        // 0.02 / 2 + 1.49 + 0.01 / 2 = 1.505 s > 1.5 s.
        match judged(h, &PLAIN) {
            Judged::TooFar(d) => {
                assert!((d - 1.505).abs() < 1e-4, "{d}");
                assert!(Judged::TooFar(d).is_reply());
            }
            other => panic!("{other:?}"),
        }
        let mut h = reply();
        h.root_dispersion = NtpShort::from_secs_f64(1.4);
        assert!(judged(h, &PLAIN).is_reply());
        assert!(matches!(judged(h, &PLAIN), Judged::Sample(_)));
    }

    #[test]
    fn samples_around_a_leap_second() {
        let near = Fixed {
            shift_ns: 0,
            leap_at: Some(t4().add_nanos(1_000_000_000)),
        };
        let j = judged(reply(), &near);
        assert_eq!(j, Judged::NearLeap);
        assert!(j.is_reply());
        let after = Fixed {
            shift_ns: 0,
            leap_at: Some(t4().add_nanos(-3_000_000_000)),
        };
        let s = sample(judged(reply(), &after));
        assert!((s.offset - 1.25).abs() < 1e-6, "{}", s.offset);
    }
}
