//! The standard `process_*` metrics (CPU, memory, file descriptors, threads, start time) of the
//! operator's own process, read from `/proc/self` at each scrape. Elsewhere than Linux there is
//! no `/proc` and the families are simply absent.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Reads `/proc/self` at each scrape; holds nothing.
#[derive(Debug)]
pub struct ProcessCollector;

/// What one scrape reads.
#[derive(Debug, Default, PartialEq)]
struct Sample {
    cpu_seconds: f64,
    resident_bytes: i64,
    virtual_bytes: i64,
    threads: i64,
    start_time_seconds: f64,
    open_fds: i64,
    max_fds: Option<i64>,
}

/// Clock ticks per second of `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux ABI the operator
/// ships for).
const TICKS_PER_SECOND: f64 = 100.0;
const PAGE_SIZE: i64 = 4096;

/// Fields of `/proc/self/stat` after the command name (which may hold spaces), `boot_time` from
/// `/proc/stat`'s `btime`.
fn parse_stat(stat: &str, boot_time: f64) -> Option<Sample> {
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // after ')' field 0 is state (3rd overall): utime 14 -> 11, stime 12, threads 17, starttime
    // 19, vsize 20, rss 21.
    let num = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
    Some(Sample {
        cpu_seconds: (num(11)? + num(12)?) / TICKS_PER_SECOND,
        threads: num(17)? as i64,
        start_time_seconds: boot_time + num(19)? / TICKS_PER_SECOND,
        virtual_bytes: num(20)? as i64,
        resident_bytes: num(21)? as i64 * PAGE_SIZE,
        ..Sample::default()
    })
}

fn boot_time(proc_stat: &str) -> Option<f64> {
    proc_stat.lines().find_map(|l| l.strip_prefix("btime "))?.trim().parse().ok()
}

fn max_open_files(limits: &str) -> Option<i64> {
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

fn sample() -> Option<Sample> {
    let boot = boot_time(&std::fs::read_to_string("/proc/stat").ok()?)?;
    let mut s = parse_stat(&std::fs::read_to_string("/proc/self/stat").ok()?, boot)?;
    s.open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as i64;
    s.max_fds = std::fs::read_to_string("/proc/self/limits").ok().as_deref().and_then(max_open_files);
    Some(s)
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = sample() else { return Ok(()) };
        let cpu = ConstCounter::new(s.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let gauges = [
            ("process_resident_memory_bytes", "Resident memory size in bytes", s.resident_bytes),
            ("process_virtual_memory_bytes", "Virtual memory size in bytes", s.virtual_bytes),
            ("process_open_fds", "Number of open file descriptors", s.open_fds),
            ("process_threads", "Number of OS threads in the process", s.threads),
        ];
        for (name, help, value) in gauges {
            let g = ConstGauge::new(value);
            g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)?;
        }
        if let Some(max) = s.max_fds {
            let g = ConstGauge::new(max);
            g.encode(encoder.encode_descriptor(
                "process_max_fds",
                "Maximum number of open file descriptors",
                None,
                g.metric_type(),
            )?)?;
        }
        let start = ConstGauge::new(s.start_time_seconds);
        start.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            None,
            start.metric_type(),
        )?)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_read_after_the_command_name() {
        // A command name with spaces and a parenthesis, as /proc shows it.
        let stat = "4242 (hardened (csi) op) S 1 4242 4242 0 -1 4194560 1200 0 0 0 250 50 0 0 20 0 7 0 12345 \
            104857600 5000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        let s = parse_stat(stat, 1_700_000_000.0).expect("parses");
        assert_eq!(s.cpu_seconds, 3.0);
        assert_eq!(s.threads, 7);
        assert_eq!(s.start_time_seconds, 1_700_000_000.0 + 123.45);
        assert_eq!((s.virtual_bytes, s.resident_bytes), (104_857_600, 5000 * 4096));
        assert_eq!(boot_time("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"), Some(1_700_000_000.0));
        let limits = concat!(
            "Limit                     Soft Limit           Hard Limit           Units\n",
            "Max open files            1048576              1048576              files\n",
        );
        assert_eq!(max_open_files(limits), Some(1_048_576));
    }

    #[test]
    fn this_process_is_sampled() {
        let s = sample().expect("/proc is there on Linux");
        assert!(s.resident_bytes > 0 && s.threads >= 1 && s.open_fds >= 3, "{s:?}");
    }
}
