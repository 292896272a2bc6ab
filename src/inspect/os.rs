//! What the root filesystem says about itself: `/etc/os-release`, Armbian's
//! `/etc/armbian-release`, and whether (and which) cloud-init is installed
//! with which NoCloud datasource configuration.

use serde::Serialize;

use crate::fs::{Filesystem, FsError};

#[derive(Debug, Clone, Serialize, Default)]
pub struct OsInfo {
    /// os-release `ID`: `ubuntu`, `debian`, …
    pub id: Option<String>,
    pub name: Option<String>,
    pub version_id: Option<String>,
    pub version_codename: Option<String>,
    pub pretty_name: Option<String>,
    /// Present on Armbian images: BOARD, VERSION, LINUXFAMILY, BRANCH.
    pub armbian: Option<ArmbianRelease>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArmbianRelease {
    pub board: Option<String>,
    pub board_name: Option<String>,
    pub version: Option<String>,
    pub family: Option<String>,
    pub branch: Option<String>,
}

/// Parses shell-style `KEY=value` / `KEY="value"` lines (os-release(5)).
pub fn parse_env_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            if line.starts_with('#') {
                return None;
            }
            let (k, v) = line.split_once('=')?;
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            Some((k.trim().to_string(), v.replace("\\\"", "\"")))
        })
        .collect()
}

fn get(pairs: &[(String, String)], key: &str) -> Option<String> {
    pairs
        .iter()
        .rev()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.clone())
}

/// Reads the OS identity from the root filesystem; `None` when it has no
/// os-release at all.
pub fn read_os(root: &Filesystem) -> Result<Option<OsInfo>, FsError> {
    let text = match root.read_text_if_exists("/etc/os-release")? {
        Some(t) => t,
        None => match root.read_text_if_exists("/usr/lib/os-release")? {
            Some(t) => t,
            None => return Ok(None),
        },
    };
    let pairs = parse_env_file(&text);
    let armbian = root.read_text_if_exists("/etc/armbian-release")?.map(|t| {
        let a = parse_env_file(&t);
        ArmbianRelease {
            board: get(&a, "BOARD"),
            board_name: get(&a, "BOARD_NAME"),
            version: get(&a, "VERSION"),
            family: get(&a, "LINUXFAMILY"),
            branch: get(&a, "BRANCH"),
        }
    });
    Ok(Some(OsInfo {
        id: get(&pairs, "ID"),
        name: get(&pairs, "NAME"),
        version_id: get(&pairs, "VERSION_ID"),
        version_codename: get(&pairs, "VERSION_CODENAME"),
        pretty_name: get(&pairs, "PRETTY_NAME"),
        armbian,
    }))
}

#[derive(Debug, Clone, Serialize)]
pub struct CloudInit {
    pub installed: bool,
    /// From `cloudinit/version.py`, else the dpkg status database.
    pub version: Option<String>,
    /// Every config file that sets `datasource_list` or a NoCloud datasource.
    pub datasource_configs: Vec<DatasourceConfig>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatasourceConfig {
    pub path: String,
    pub datasource_list: Option<Vec<String>>,
    /// `datasource.NoCloud.fs_label`: the FAT label cloud-init reads the
    /// seed from.
    pub nocloud_fs_label: Option<String>,
    /// Set when the file is not YAML we could parse.
    pub parse_error: Option<String>,
}

const CLOUD_INIT_MARKERS: [&str; 3] = [
    "/usr/bin/cloud-init",
    "/etc/cloud/cloud.cfg",
    "/usr/lib/python3/dist-packages/cloudinit/version.py",
];
const VERSION_PY: &str = "/usr/lib/python3/dist-packages/cloudinit/version.py";
const CFG_DIR: &str = "/etc/cloud/cloud.cfg.d";
const DPKG_STATUS: &str = "/var/lib/dpkg/status";

pub fn read_cloud_init(root: &Filesystem) -> Result<CloudInit, FsError> {
    let installed = CLOUD_INIT_MARKERS.iter().any(|p| root.exists(p));
    let mut version = root
        .read_text_if_exists(VERSION_PY)?
        .and_then(|t| version_from_py(&t));
    if version.is_none() {
        version = root
            .read_bounded_if_exists(DPKG_STATUS, crate::fs::limits::DPKG_STATUS)?
            .and_then(|b| version_from_dpkg(&String::from_utf8_lossy(&b), "cloud-init"));
    }
    let mut files = vec!["/etc/cloud/cloud.cfg".to_string()];
    if root.exists(CFG_DIR) {
        let mut names: Vec<String> = root
            .list(CFG_DIR)?
            .into_iter()
            .filter(|e| e.name.ends_with(".cfg"))
            .map(|e| format!("{CFG_DIR}/{}", e.name))
            .collect();
        names.sort();
        files.extend(names);
    }
    let mut datasource_configs = Vec::new();
    for path in files {
        let Some(text) = root.read_text_if_exists(&path)? else {
            continue;
        };
        if let Some(cfg) = datasource_config(&path, &text) {
            datasource_configs.push(cfg);
        }
    }
    Ok(CloudInit {
        installed,
        version,
        datasource_configs,
    })
}

/// `__VERSION__ = "25.1.4"` in cloudinit/version.py.
fn version_from_py(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let rest = l
            .trim()
            .strip_prefix("__VERSION__")?
            .trim()
            .strip_prefix('=')?;
        Some(rest.trim().trim_matches(['"', '\'']).to_string())
    })
}

/// The `Version:` of `package` in a dpkg status file.
fn version_from_dpkg(text: &str, package: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let mut lines = stanza.lines();
        lines
            .clone()
            .find(|l| l.trim() == format!("Package: {package}"))?;
        lines.find_map(|l| l.strip_prefix("Version: ").map(str::to_string))
    })
}

fn datasource_config(path: &str, text: &str) -> Option<DatasourceConfig> {
    let mentions = text.contains("datasource");
    if !mentions {
        return None;
    }
    let value: serde_json::Value = match serde_saphyr::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return Some(DatasourceConfig {
                path: path.to_string(),
                datasource_list: None,
                nocloud_fs_label: None,
                parse_error: Some(e.to_string().lines().next().unwrap_or("").to_string()),
            });
        }
    };
    let datasource_list = value.get("datasource_list").and_then(|l| {
        l.as_array().map(|a| {
            a.iter()
                .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_string))
                .collect()
        })
    });
    let nocloud_fs_label = value
        .get("datasource")
        .and_then(|d| d.get("NoCloud"))
        .and_then(|n| n.get("fs_label"))
        .and_then(|l| l.as_str())
        .map(str::to_string);
    (datasource_list.is_some() || nocloud_fs_label.is_some()).then(|| DatasourceConfig {
        path: path.to_string(),
        datasource_list,
        nocloud_fs_label,
        parse_error: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_release_quotes_and_comments() {
        let p = parse_env_file("# c\nNAME=\"Ubuntu\"\nVERSION_ID='24.04'\nID=ubuntu\n");
        assert_eq!(get(&p, "NAME").as_deref(), Some("Ubuntu"));
        assert_eq!(get(&p, "VERSION_ID").as_deref(), Some("24.04"));
        assert_eq!(get(&p, "ID").as_deref(), Some("ubuntu"));
    }

    #[test]
    fn cloud_init_version_sources() {
        assert_eq!(
            version_from_py("x = 1\n__VERSION__ = \"25.1.4\"\n").as_deref(),
            Some("25.1.4")
        );
        let status = "Package: bash\nVersion: 5\n\nPackage: cloud-init\nStatus: ok\nVersion: 24.1.3-0ubuntu3\n";
        assert_eq!(
            version_from_dpkg(status, "cloud-init").as_deref(),
            Some("24.1.3-0ubuntu3")
        );
    }

    #[test]
    fn nocloud_fs_label_is_found() {
        let cfg = "# configure cloud-init for NoCloud\ndatasource_list: [ NoCloud, None ]\ndatasource:\n  NoCloud:\n    fs_label: system-boot\n";
        let c = datasource_config("/x.cfg", cfg).unwrap();
        assert_eq!(c.nocloud_fs_label.as_deref(), Some("system-boot"));
        assert_eq!(
            c.datasource_list,
            Some(vec!["NoCloud".to_string(), "None".to_string()])
        );
        assert!(datasource_config("/y.cfg", "users: []\n").is_none());
    }
}
