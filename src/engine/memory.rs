//! How much memory this process has, and can count on now: Linux's `MemTotal` and
//! `MemAvailable`, within the process's cgroup memory limit (v1 or v2), which also bounds the
//! page cache of the files it reads (charged to that cgroup). Like `MemAvailable`, the room
//! under the limit counts the cgroup's page cache as available: it is reclaimed as needed.

use std::fs::read_to_string;
use std::path::Path;

/// Bytes of memory available to this process now, or `None` where this cannot be read (not
/// Linux, or no `/proc`).
pub(crate) fn available() -> Option<u64> {
    let host = meminfo("MemAvailable:")?;
    Some(cgroup().map_or(host, |(limit, used)| (limit - used.min(limit)).min(host)))
}

/// Bytes of memory this process may use in all: the machine's, or its cgroup's limit if
/// lower; `None` where this cannot be read.
pub(crate) fn total() -> Option<u64> {
    let host = meminfo("MemTotal:")?;
    Some(cgroup().map_or(host, |(limit, _)| limit.min(host)))
}

/// A field of `/proc/meminfo`, in bytes.
fn meminfo(field: &str) -> Option<u64> {
    meminfo_field(&read_to_string("/proc/meminfo").ok()?, field)
}

/// The cgroup memory limit of this process and its usage other than page cache.
fn cgroup() -> Option<(u64, u64)> {
    let groups = read_to_string("/proc/self/cgroup").ok()?;
    cgroup_limit(&groups, Path::new("/sys/fs/cgroup"))
}

/// Field `field` (with its colon) of a `/proc/meminfo` text, in bytes.
fn meminfo_field(text: &str, field: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The limit, and the usage other than page cache, of the memory cgroup named in `groups` (a
/// `/proc/self/cgroup` text), under the cgroup file systems mounted at `root`: `None`
/// without a limit.
fn cgroup_limit(groups: &str, root: &Path) -> Option<(u64, u64)> {
    let read = |path: &Path| -> Option<u64> { read_to_string(path).ok()?.trim().parse().ok() };
    // A counter of a memory.stat file, 0 where missing.
    let stat = |path: &Path, key: &str| -> u64 {
        let text = read_to_string(path).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    };
    for line in groups.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let path = path.trim_start_matches('/');
        let (limit, usage) = if controllers.split(',').any(|c| c == "memory") {
            let dir = root.join("memory").join(path);
            let cache = stat(&dir.join("memory.stat"), "total_cache");
            (
                read(&dir.join("memory.limit_in_bytes")),
                read(&dir.join("memory.usage_in_bytes")).map(|u| u.saturating_sub(cache)),
            )
        } else if controllers.is_empty() {
            // cgroup v2 ("max" does not parse: no limit), mounted at the root or beside v1.
            let dir = [root.to_path_buf(), root.join("unified")]
                .into_iter()
                .map(|r| r.join(path))
                .find(|d| d.join("memory.max").exists());
            let Some(dir) = dir else { continue };
            let cache = stat(&dir.join("memory.stat"), "file");
            (
                read(&dir.join("memory.max")),
                read(&dir.join("memory.current")).map(|u| u.saturating_sub(cache)),
            )
        } else {
            continue;
        };
        // v1 reports "no limit" as a huge number.
        if let (Some(limit), Some(usage)) = (limit, usage) {
            if limit < 1 << 60 {
                return Some((limit, usage));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_is_read_in_kib() {
        let text = "MemTotal:       24684084 kB\nMemFree: 1 kB\nMemAvailable:   2048 kB\n";
        assert_eq!(meminfo_field(text, "MemAvailable:"), Some(2 << 20));
        assert_eq!(meminfo_field(text, "MemTotal:"), Some(24684084 << 10));
        assert_eq!(meminfo_field("MemTotal: 1 kB\n", "MemAvailable:"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_host_has_some_memory_available() {
        let (available, total) = (available().unwrap(), total().unwrap());
        let machine = meminfo("MemTotal:").unwrap();
        assert!(0 < available && available <= total && total <= machine);
    }

    #[test]
    fn cgroup_limits_v1_and_v2() {
        let root = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| {
            let p = root.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        // v1: limit 3 GiB, 1.5 GiB in use of which 0.5 GiB page cache.
        write("memory/jobs/a/memory.limit_in_bytes", "3221225472\n");
        write("memory/jobs/a/memory.usage_in_bytes", "1610612736\n");
        write(
            "memory/jobs/a/memory.stat",
            "cache 1\nrss 2\ntotal_cache 536870912\ntotal_rss 3\n",
        );
        let v1 = "5:memory:/jobs/a\n4:cpu,cpuacct:/\n0::/\n";
        assert_eq!(cgroup_limit(v1, root.path()), Some((3 << 30, 1 << 30)));
        // v1 without a limit.
        write("memory/free/memory.limit_in_bytes", "9223372036854771712\n");
        write("memory/free/memory.usage_in_bytes", "1\n");
        assert_eq!(cgroup_limit("4:memory:/free\n0::/\n", root.path()), None);
        // v2, beside v1 (`unified`) or alone.
        write("unified/svc/memory.max", "1000\n");
        write("unified/svc/memory.current", "400\n");
        write(
            "unified/svc/memory.stat",
            "anon 300\nfile 100\nfile_mapped 50\n",
        );
        assert_eq!(cgroup_limit("0::/svc\n", root.path()), Some((1000, 300)));
        write("top/memory.max", "max\n");
        write("top/memory.current", "400\n");
        assert_eq!(cgroup_limit("0::/top\n", root.path()), None);
        // Nothing mounted where the text points.
        assert_eq!(cgroup_limit("0::/elsewhere\n", root.path()), None);
    }
}
