//! After start-up, give back what only start-up needed.
//!
//! Start-up parses the configuration, the devices file and the profiles,
//! registers with EdgeX and builds the indexes: its temporaries are freed,
//! but glibc keeps freed heap pages, and the code that ran stays mapped
//! (with the kernel's fault-around, most of the binary's `.text` ends up
//! resident though little of it runs again). On a Pi that is memory other
//! services need. So, once settled, the service hands freed heap back
//! (`malloc_trim`) and tells the kernel its own code and read-only data are
//! cold (`MADV_PAGEOUT`, Linux 5.4+): pages the pipeline uses fault back in
//! on first use, the rest stays out. `scripts/idle-rss.sh` measures the
//! effect; a kernel without `MADV_PAGEOUT` ignores the advice.

use std::time::Duration;

/// Wait `after`, then settle (once).
pub async fn after(after: Duration) {
    tokio::time::sleep(after).await;
    let paged = tokio::task::spawn_blocking(settle).await.unwrap_or(0);
    tracing::debug!(paged_out_kib = paged >> 10, "start-up memory given back");
}

/// Trim the heap and page out our own file-backed, read-only mappings.
/// Returns the bytes advised.
pub fn settle() -> usize {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the OS.
    unsafe {
        libc::malloc_trim(0);
    }
    page_out_own_code()
}

#[cfg(target_os = "linux")]
fn page_out_own_code() -> usize {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return 0;
    };
    let mut advised = 0;
    for (start, end) in own_read_only(&maps, &exe.to_string_lossy()) {
        let len = end - start;
        // SAFETY: the range is a whole mapping of our own executable, read-only
        // and file-backed: paging it out only drops pages the kernel reads
        // back from the file on the next access.
        let r = unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_PAGEOUT) };
        if r == 0 {
            advised += len;
        }
    }
    advised
}

#[cfg(not(target_os = "linux"))]
fn page_out_own_code() -> usize {
    0
}

/// The read-only mappings of `exe` in a `/proc/self/maps` text.
fn own_read_only<'a>(maps: &'a str, exe: &'a str) -> impl Iterator<Item = (usize, usize)> + 'a {
    maps.lines().filter_map(move |l| {
        let mut f = l.split_ascii_whitespace();
        let (range, perms) = (f.next()?, f.next()?);
        let path = f.nth(3)?;
        if path != exe || perms.contains('w') {
            return None;
        }
        let (a, b) = range.split_once('-')?;
        Some((
            usize::from_str_radix(a, 16).ok()?,
            usize::from_str_radix(b, 16).ok()?,
        ))
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_our_read_only_mappings_are_chosen() {
        let maps = "\
5595a2b7e000-5595a2e43000 r--p 00000000 fe:01 123 /usr/bin/device-lorawan
5595a2e43000-5595a373e000 r-xp 002c5000 fe:01 123 /usr/bin/device-lorawan
5595a379e000-5595a37a0000 rw-p 00c20000 fe:01 123 /usr/bin/device-lorawan
5595d0895000-5595d0954000 rw-p 00000000 00:00 0 [heap]
7f5a3f7ef000-7f5a3f945000 r-xp 00028000 fe:01 77 /usr/lib/x86_64-linux-gnu/libc.so.6
";
        let got: Vec<_> = super::own_read_only(maps, "/usr/bin/device-lorawan").collect();
        assert_eq!(
            got,
            [
                (0x5595a2b7e000, 0x5595a2e43000),
                (0x5595a2e43000, 0x5595a373e000)
            ]
        );
    }

    #[test]
    fn settling_leaves_the_process_working() {
        super::settle();
        // Code paged out comes back on use.
        assert_eq!(format!("{}", 6 * 7), "42");
    }
}
