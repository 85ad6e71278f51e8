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
/// without a limit. Limits of enclosing cgroups count too: the cgroup and its ancestors up
/// to the mount's root are read (each one's usage covers its subtree), and the one with the
/// least room is the limit. In a container without a cgroup namespace, whose own v1 cgroup
/// is mounted at the root while `/proc/self/cgroup` names it by its host path, that root is
/// read.
fn cgroup_limit(groups: &str, root: &Path) -> Option<(u64, u64)> {
    for line in groups.lines() {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        let path = path.trim_start_matches('/');
        let found = if controllers.split(',').any(|c| c == "memory") {
            let base = root.join("memory");
            let v1 = Files {
                limit: "memory.limit_in_bytes",
                usage: "memory.usage_in_bytes",
                cache: "total_cache",
            };
            [base.join(path), base.clone()]
                .into_iter()
                .find(|d| d.join(v1.limit).exists())
                .and_then(|dir| tightest(&base, &dir, &v1))
        } else if controllers.is_empty() {
            // cgroup v2, mounted at the root or beside v1 (`unified`)
            let v2 = Files {
                limit: "memory.max",
                usage: "memory.current",
                cache: "file",
            };
            [root.to_path_buf(), root.join("unified")]
                .into_iter()
                .find(|b| b.join(path).join(v2.limit).exists())
                .and_then(|base| tightest(&base, &base.join(path), &v2))
        } else {
            None
        };
        if found.is_some() {
            return found;
        }
    }
    None
}

/// The files of a cgroup version: its limit, its usage, and the page-cache key of its
/// `memory.stat`.
struct Files {
    limit: &'static str,
    usage: &'static str,
    cache: &'static str,
}

/// Of `dir` and its ancestors up to `base` (included), the limited one with the least room:
/// (limit, usage other than page cache). v1 reports "no limit" as a huge number, v2 as
/// "max" (which does not parse).
fn tightest(base: &Path, dir: &Path, files: &Files) -> Option<(u64, u64)> {
    let read = |path: &Path| -> Option<u64> { read_to_string(path).ok()?.trim().parse().ok() };
    // A counter of a memory.stat file, 0 where missing.
    let stat = |path: &Path, key: &str| -> u64 {
        let text = read_to_string(path).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    };
    dir.ancestors()
        .take_while(|d| d.starts_with(base))
        .filter_map(|d| {
            let limit = read(&d.join(files.limit)).filter(|&l| l < 1 << 60)?;
            let cache = stat(&d.join("memory.stat"), files.cache);
            let usage = read(&d.join(files.usage))?.saturating_sub(cache);
            Some((limit, usage))
        })
        .min_by_key(|&(limit, usage)| limit.saturating_sub(usage))
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

    /// Writes `text` to `rel` under `root`, creating its folders.
    fn write_file(root: &Path, rel: &str, text: &str) {
        let p = root.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn cgroup_limits_v1_and_v2() {
        let root = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| write_file(root.path(), rel, text);
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

    /// Limits set above the process's own cgroup, and a v1 cgroup mounted at the root of a
    /// container that names it by its host path.
    #[test]
    fn cgroup_limits_of_enclosing_groups() {
        let root = tempfile::tempdir().unwrap();
        let write = |rel: &str, text: &str| write_file(root.path(), rel, text);
        // v1: no limit of its own, 2 GiB on the enclosing group, whose subtree (siblings
        // included) uses 1 GiB of which 400 bytes page cache.
        write("memory/a/b/memory.limit_in_bytes", "9223372036854771712\n");
        write("memory/a/b/memory.usage_in_bytes", "1000\n");
        write("memory/a/memory.limit_in_bytes", "2147483648\n");
        write("memory/a/memory.usage_in_bytes", "1073741824\n");
        write("memory/a/memory.stat", "total_cache 400\n");
        assert_eq!(
            cgroup_limit("3:memory:/a/b\n", root.path()),
            Some((2 << 30, (1 << 30) - 400))
        );
        // v1 in a container: /proc/self/cgroup gives the host path, the container's own cgroup
        // is the mount's root.
        let inside = tempfile::tempdir().unwrap();
        write_file(inside.path(), "memory/memory.limit_in_bytes", "4096\n");
        write_file(inside.path(), "memory/memory.usage_in_bytes", "1024\n");
        assert_eq!(
            cgroup_limit("3:memory:/docker/0123abcd\n", inside.path()),
            Some((4096, 1024))
        );
        // v2: a service without a limit in a slice limited to 5000 bytes, whose subtree uses
        // 3000 (1000 of it page cache).
        write("slice/svc/memory.max", "max\n");
        write("slice/svc/memory.current", "100\n");
        write("slice/memory.max", "5000\n");
        write("slice/memory.current", "3000\n");
        write("slice/memory.stat", "anon 2000\nfile 1000\n");
        assert_eq!(
            cgroup_limit("0::/slice/svc\n", root.path()),
            Some((5000, 2000))
        );
        // both limited: the one with the least room (the service: 900 left of 1000)
        write("slice/svc/memory.max", "1000\n");
        assert_eq!(
            cgroup_limit("0::/slice/svc\n", root.path()),
            Some((1000, 100))
        );
        // v2 in a container with its own cgroup namespace: "0::/", the limit at the root.
        let ns = tempfile::tempdir().unwrap();
        write_file(ns.path(), "memory.max", "8192\n");
        write_file(ns.path(), "memory.current", "4096\n");
        assert_eq!(cgroup_limit("0::/\n", ns.path()), Some((8192, 4096)));
    }
}
