//! This process's own figures for `/metrics`, read from `/proc/self` (Linux):
//! resident memory, CPU time, open file descriptors and their limit, under
//! the usual Prometheus `process_*` names. Anything that cannot be read is
//! left out of the output rather than shown as zero.

use std::fmt::Write as _;

/// One reading of this process.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Reading {
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
    pub threads: Option<u64>,
}

/// `AT_CLKTCK` and `AT_PAGESZ` in the auxiliary vector.
const AT_PAGESZ: usize = 6;
const AT_CLKTCK: usize = 17;

/// A value from `/proc/self/auxv` (native-endian word pairs).
fn auxv(key: usize) -> Option<u64> {
    let raw = std::fs::read("/proc/self/auxv").ok()?;
    let word = std::mem::size_of::<usize>();
    raw.chunks_exact(word * 2).find_map(|pair| {
        let (k, v) = pair.split_at(word);
        let k = usize::from_ne_bytes(k.try_into().ok()?);
        let v = usize::from_ne_bytes(v.try_into().ok()?);
        (k == key).then_some(v as u64)
    })
}

/// CPU seconds (user + system), virtual and resident bytes and threads
/// from the text of `/proc/self/stat`.
fn parse_stat(text: &str, ticks_per_s: u64, page: u64) -> Option<(f64, u64, u64, u64)> {
    // The command name is in parentheses and may hold spaces or ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the man page, at index 0 here.
    let at = |n: usize| -> Option<u64> { fields.get(n - 3)?.parse().ok() };
    let (utime, stime) = (at(14)?, at(15)?);
    let threads = at(20)?;
    let vsize = at(23)?;
    let rss_pages = at(24)?;
    let cpu = (utime + stime) as f64 / ticks_per_s.max(1) as f64;
    Some((cpu, vsize, rss_pages.saturating_mul(page), threads))
}

/// The soft "Max open files" from the text of `/proc/self/limits`.
fn parse_max_fds(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    soft.parse().ok()
}

impl Reading {
    /// Reads `/proc/self` now.
    pub fn now() -> Self {
        let mut r = Reading::default();
        let ticks = auxv(AT_CLKTCK).unwrap_or(100);
        let page = auxv(AT_PAGESZ).unwrap_or(4096);
        if let Some((cpu, vsize, rss, threads)) = std::fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|t| parse_stat(&t, ticks, page))
        {
            r.cpu_seconds = Some(cpu);
            r.virtual_bytes = Some(vsize);
            r.resident_bytes = Some(rss);
            r.threads = Some(threads);
        }
        r.open_fds = std::fs::read_dir("/proc/self/fd")
            .ok()
            // The directory's own descriptor, open while it is read, is not counted.
            .map(|d| (d.count() as u64).saturating_sub(1));
        r.max_fds = std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|t| parse_max_fds(&t));
        r
    }

    /// Appends the figures read, in the Prometheus text format.
    pub fn render(&self, out: &mut String) {
        let mut one = |name: &str, kind: &str, help: &str, value: Option<String>| {
            if let Some(v) = value {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}"
                );
            }
        };
        one(
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            self.cpu_seconds.map(|s| s.to_string()),
        );
        one(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            self.resident_bytes.map(|b| b.to_string()),
        );
        one(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            self.virtual_bytes.map(|b| b.to_string()),
        );
        one(
            "process_open_fds",
            "gauge",
            "Open file descriptors (sockets included).",
            self.open_fds.map(|n| n.to_string()),
        );
        one(
            "process_max_fds",
            "gauge",
            "The limit on open file descriptors (soft RLIMIT_NOFILE).",
            self.max_fds.map(|n| n.to_string()),
        );
        one(
            "process_threads",
            "gauge",
            "Operating system threads of this process.",
            self.threads.map(|n| n.to_string()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_found_after_a_name_with_spaces_and_parentheses() {
        // pid (comm) state ppid pgrp session tty tpgid flags minflt cminflt
        // majflt cmajflt utime stime cutime cstime priority nice threads
        // itrealvalue starttime vsize rss ...
        let text = "42 (a b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 7 7 20 0 3 0 \
                    1000 123456789 1500 18446744073709551615 0 0";
        let (cpu, vsize, rss, threads) = parse_stat(text, 100, 4096).unwrap();
        assert_eq!(cpu, 3.0);
        assert_eq!(vsize, 123_456_789);
        assert_eq!(rss, 1500 * 4096);
        assert_eq!(threads, 3);
        assert!(parse_stat("garbage", 100, 4096).is_none());
    }

    #[test]
    fn the_soft_open_files_limit_is_read() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max processes             63455                63455                processes\n\
                    Max open files            1024                 524288               files\n";
        assert_eq!(parse_max_fds(text), Some(1024));
        assert_eq!(
            parse_max_fds("Max open files unlimited unlimited files"),
            None
        );
    }

    #[test]
    fn this_process_is_read_from_proc() {
        let before = Reading::now();
        let rss = before.resident_bytes.expect("resident memory");
        // A test binary holds several MiB; a page count taken as bytes would not.
        assert!(rss > 1024 * 1024, "rss {rss}");
        // Files opened show up as descriptors (other tests running
        // meanwhile may open or close a few).
        let held: Vec<_> = (0..200)
            .map(|_| std::fs::File::open("/proc/self/stat").unwrap())
            .collect();
        let after = Reading::now();
        drop(held);
        let (b, a) = (before.open_fds.unwrap(), after.open_fds.unwrap());
        assert!(a >= b + 150, "fds before {b}, after {a}");
        assert!(after.max_fds.unwrap() >= a);
        // Burn some CPU: the counter moves.
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let later = Reading::now();
        assert!(
            later.cpu_seconds.unwrap() >= before.cpu_seconds.unwrap() + 0.1,
            "{before:?} -> {later:?}"
        );
        let mut out = String::new();
        later.render(&mut out);
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
        ] {
            assert!(out.contains(&format!("\n{name} ")), "{name}: {out}");
        }
    }
}
