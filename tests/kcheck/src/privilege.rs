//! Dropping root: `setkey-stress --as-user UID` holds its transforms as an unprivileged user,
//! to show that such a user cannot use up what the kernel's own crypto users need.

use std::io;

/// Drops every group and becomes `uid`/`uid` (gid = uid), for good. The open-file limit
/// must be raised before (an unprivileged process cannot raise its hard limit).
pub fn become_user(uid: u32) -> io::Result<()> {
    // SAFETY: setgroups with an empty list reads no memory.
    if unsafe { libc::setgroups(0, std::ptr::null()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: plain system calls without pointers; results checked.
    if unsafe { libc::setresgid(uid, uid, uid) } != 0 || unsafe { libc::setresuid(uid, uid, uid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: getuid/geteuid take no arguments.
    let (real, effective) = unsafe { (libc::getuid(), libc::geteuid()) };
    if real != uid || effective != uid {
        return Err(io::Error::other(format!("still uid {real}/{effective} after setresuid({uid})")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As root the drop works and is final; otherwise it must fail (not pretend).
    #[test]
    fn dropping_to_nobody_in_a_child() {
        // SAFETY: fork in a test; the child only makes system calls and exits.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: getuid takes no arguments.
            let was_root = unsafe { libc::getuid() } == 0;
            let code = match become_user(65534) {
                // SAFETY: as above; setuid(0) must now fail.
                Ok(()) if unsafe { libc::setuid(0) } != 0 => 0,
                Ok(()) => 1,
                Err(_) if !was_root => 0,
                Err(_) => 2,
            };
            // SAFETY: ends the child without running the parent's test harness teardown.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status}");
    }
}
