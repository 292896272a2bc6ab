//! Which NTP client a root file system ships. cloud-init's `ntp` module
//! installs its preferred client at boot when it finds none of the one it
//! picks (an apt run that a Pi without RTC, its clock years behind, can
//! fail), so the build pins the client the image already has. A client
//! counts as installed when its daemon is where cloud-init's `check_exe`
//! (and the package) puts it.

use crate::fs::{Filesystem, FsError};
use crate::render::quirks::NtpClient;

/// Each client with the paths of its daemon, in cloud-init's order of
/// preference on Debian and Ubuntu (chrony, ntp, systemd-timesyncd), so
/// an image with two gets the one cloud-init would pick itself.
const CLIENTS: [(NtpClient, &[&str]); 3] = [
    (NtpClient::Chrony, &["/usr/sbin/chronyd", "/sbin/chronyd"]),
    // ntp and its successor ntpsec both install /usr/sbin/ntpd.
    (NtpClient::Ntp, &["/usr/sbin/ntpd", "/sbin/ntpd"]),
    (
        NtpClient::SystemdTimesyncd,
        &[
            "/usr/lib/systemd/systemd-timesyncd",
            "/lib/systemd/systemd-timesyncd",
        ],
    ),
];

/// The image's NTP client, or `None` when it has none.
pub fn detect(root: &Filesystem) -> Result<Option<NtpClient>, FsError> {
    for (client, paths) in CLIENTS {
        for path in paths {
            match root.stat(path) {
                Ok(_) => return Ok(Some(client)),
                Err(FsError::NotFound(_) | FsError::NotADirectory(_)) => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(None)
}
