//! Faults a simulated router can be told to show, so transports can be tested against
//! the failures real fleets have.
//!
//! On the command line a fault is `KIND[=VALUE][@FRACTION]`: `drop`, `delay=MS`,
//! `refuse-login`, `fatal`, `offline=SECS`, applying to every router or to the given
//! fraction of them. Which routers a fraction selects is fixed by their index (spread
//! evenly through the fleet), so a test knows in advance which ones misbehave.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The reply to the first command after login stops in the middle of a sentence and
    /// the connection closes.
    DropMidSentence,
    /// Every reply is sent this late.
    Delay(Duration),
    /// Every login fails as if the password were wrong.
    RefuseLogin,
    /// The first command after login is answered `!fatal` and the connection closes.
    Fatal,
    /// The router is offline for this long from the start: connections are refused.
    Offline(Duration),
}

/// A fault and the share of the fleet that shows it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fault {
    pub kind: FaultKind,
    /// From 0 to 1; 1 means every router.
    pub fraction: f64,
}

impl Fault {
    pub fn all(kind: FaultKind) -> Self {
        Self {
            kind,
            fraction: 1.0,
        }
    }

    /// Whether router `index` shows this fault: exactly `fraction` of any run of
    /// routers, spread evenly.
    pub fn applies_to(&self, index: usize) -> bool {
        let f = self.fraction.clamp(0.0, 1.0);
        ((index + 1) as f64 * f).floor() > (index as f64 * f).floor()
    }
}

/// The faults one router shows, resolved from the fleet's list.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouterFaults {
    pub drop_mid_sentence: bool,
    pub delay: Option<Duration>,
    pub refuse_login: bool,
    pub fatal: bool,
    pub offline: Option<Duration>,
}

impl RouterFaults {
    pub(crate) fn resolve(faults: &[Fault], index: usize) -> Self {
        let mut out = Self::default();
        for fault in faults.iter().filter(|f| f.applies_to(index)) {
            match fault.kind {
                FaultKind::DropMidSentence => out.drop_mid_sentence = true,
                FaultKind::Delay(d) => out.delay = Some(d),
                FaultKind::RefuseLogin => out.refuse_login = true,
                FaultKind::Fatal => out.fatal = true,
                FaultKind::Offline(d) => out.offline = Some(d),
            }
        }
        out
    }
}

/// A fault written on the command line could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFault(String);

impl fmt::Display for BadFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; expected drop, delay=MS, refuse-login, fatal or offline=SECS, optionally followed by @FRACTION (e.g. delay=200@0.1)",
            self.0
        )
    }
}

impl std::error::Error for BadFault {}

impl FromStr for Fault {
    type Err = BadFault;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (spec, fraction) = match s.split_once('@') {
            Some((spec, fraction)) => {
                let f: f64 = fraction
                    .parse()
                    .map_err(|_| BadFault(format!("bad fraction {fraction:?}")))?;
                if !(0.0..=1.0).contains(&f) {
                    return Err(BadFault(format!("fraction {f} is not between 0 and 1")));
                }
                (spec, f)
            }
            None => (s, 1.0),
        };
        let (name, value) = match spec.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (spec, None),
        };
        let number = |unit: &str| -> Result<u64, BadFault> {
            let v = value.ok_or_else(|| BadFault(format!("{name} needs a value in {unit}")))?;
            v.parse()
                .map_err(|_| BadFault(format!("{name}={v}: not a number of {unit}")))
        };
        let kind = match name {
            "drop" | "drop-mid-sentence" => FaultKind::DropMidSentence,
            "delay" => FaultKind::Delay(Duration::from_millis(number("milliseconds")?)),
            "refuse-login" => FaultKind::RefuseLogin,
            "fatal" => FaultKind::Fatal,
            "offline" => FaultKind::Offline(Duration::from_secs(number("seconds")?)),
            other => return Err(BadFault(format!("unknown fault {other:?}"))),
        };
        Ok(Fault { kind, fraction })
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FaultKind::DropMidSentence => f.write_str("drop")?,
            FaultKind::Delay(d) => write!(f, "delay={}", d.as_millis())?,
            FaultKind::RefuseLogin => f.write_str("refuse-login")?,
            FaultKind::Fatal => f.write_str("fatal")?,
            FaultKind::Offline(d) => write!(f, "offline={}", d.as_secs())?,
        }
        if self.fraction < 1.0 {
            write!(f, "@{}", self.fraction)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_kind() {
        assert_eq!("drop".parse(), Ok(Fault::all(FaultKind::DropMidSentence)));
        assert_eq!(
            "delay=250".parse(),
            Ok(Fault::all(FaultKind::Delay(Duration::from_millis(250))))
        );
        assert_eq!(
            "offline=3@0.5".parse(),
            Ok(Fault {
                kind: FaultKind::Offline(Duration::from_secs(3)),
                fraction: 0.5
            })
        );
        assert!("delay".parse::<Fault>().is_err());
        assert!("fatal@2".parse::<Fault>().is_err());
        assert!("explode".parse::<Fault>().is_err());
        assert_eq!(
            "refuse-login@0.25".parse::<Fault>().map(|f| f.to_string()),
            Ok("refuse-login@0.25".into())
        );
    }

    #[test]
    fn fractions_pick_an_even_share() {
        let f = Fault {
            kind: FaultKind::Fatal,
            fraction: 0.1,
        };
        assert_eq!((0..1000).filter(|&i| f.applies_to(i)).count(), 100);
        let half = Fault {
            kind: FaultKind::Fatal,
            fraction: 0.5,
        };
        assert!(!half.applies_to(0) && half.applies_to(1) && !half.applies_to(2));
        assert!((0..10).all(|i| Fault::all(FaultKind::Fatal).applies_to(i)));
        let none = Fault {
            kind: FaultKind::Fatal,
            fraction: 0.0,
        };
        assert!((0..10).all(|i| !none.applies_to(i)));
    }
}
