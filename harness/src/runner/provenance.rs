//! Provenance stamped on every row: run id, time, git commit of the working tree, CPU and its features,
//! harness version.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Clone, Debug)]
pub struct Provenance {
    pub run_id: String,
    pub started_at: String,
    pub git_commit: String,
    pub cpu: String,
    pub cpu_features: String,
    pub harness_version: String,
}

impl Provenance {
    pub fn collect() -> Self {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let (date, time) = utc(now.as_secs());
        // Seconds alone can collide when two runs start together (CI shards): add sub-second digits.
        let run_id = format!(
            "{}-{}-{:03}",
            date.replace('-', ""),
            time.replace(':', ""),
            now.subsec_millis()
        );
        Provenance {
            run_id,
            started_at: format!("{date}T{time}Z"),
            git_commit: git_commit(),
            cpu: kernels::isa::cpu_model(),
            cpu_features: kernels::isa::cpu_features().join(" "),
            harness_version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

/// `git rev-parse` of the current directory's checkout, `-dirty` when tracked files changed; `unknown`
/// outside a checkout.
fn git_commit() -> String {
    let out = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match out(&["rev-parse", "--short=12", "HEAD"]) {
        Some(sha) if !sha.is_empty() => {
            let dirty = out(&["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.is_empty());
            if dirty { format!("{sha}-dirty") } else { sha }
        }
        _ => "unknown".to_string(),
    }
}

/// `("YYYY-MM-DD", "HH:MM:SS")` for seconds since the Unix epoch (proleptic Gregorian, UTC).
fn utc(secs: u64) -> (String, String) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant's published algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (
        format!("{y:04}-{m:02}-{d:02}"),
        format!("{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), ("1970-01-01".into(), "00:00:00".into()));
        assert_eq!(utc(951_782_400), ("2000-02-29".into(), "00:00:00".into()));
        assert_eq!(utc(1_795_651_199), ("2026-11-25".into(), "23:59:59".into()));
    }
}
