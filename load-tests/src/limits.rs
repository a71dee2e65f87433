//! The open-file limit: every WebSocket is a file descriptor, on the
//! client and on the server, so large runs need more than the usual 1024.

/// Raises this process's soft open-file limit to its hard limit and returns
/// the limit now in force (`None` if it cannot be read or raised).
pub fn raise_nofile_limit() -> Option<u64> {
    rlimit::increase_nofile_limit(u64::MAX).ok()
}

/// File descriptors a run with `connections` sockets needs: one each plus
/// headroom for the runtime, the UDP sockets of real calls and stdio.
pub fn fds_needed(connections: u64) -> u64 {
    connections + 64
}

/// A warning when `limit` (of `who`) is below what `connections` sockets
/// need, with the fix; `None` when it suffices.
pub fn check(who: &str, limit: u64, connections: u64) -> Option<String> {
    let needed = fds_needed(connections);
    (limit < needed).then(|| {
        format!(
            "{who}'s open-file limit is {limit} but {connections} connections need about {needed}; \
             connections beyond it will fail. Raise it with `ulimit -n {needed}` (or higher) in the \
             shell that starts {who}"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warns_only_when_the_limit_is_too_low() {
        assert_eq!(fds_needed(1000), 1064);
        assert!(check("the server", 1024, 1000).unwrap().contains("ulimit -n 1064"));
        assert_eq!(check("parley-load", 20000, 1000), None);
    }

    #[test]
    fn raising_never_lowers_the_limit() {
        let before = crate::procfs::max_open_files(std::process::id()).unwrap();
        let after = raise_nofile_limit().unwrap();
        assert!(after >= before, "{after} < {before}");
    }
}
