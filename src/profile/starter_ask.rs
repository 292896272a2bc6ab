//! The questions `init` asks on a terminal: the base image (a catalog
//! entry or a local file), the board, the LAN, how many nodes, each node's
//! name, address and (optional) MAC, and Wi-Fi. Every question offers a
//! default in brackets (Enter takes it), checks the answer as it is typed
//! and asks again with the reason, at most [`MAX_TRIES`] times. Written
//! over [`Asker`], so the rules are tested without a terminal; `app`
//! supplies the terminal (and reads the passphrase without echo). The
//! network questions are in `nodes`.

use std::fmt;
use std::io;
use std::path::PathBuf;

use thiserror::Error;

use crate::profile::ident::CountryCode;
use crate::profile::platform::{Board, OsRelease};
use crate::profile::starter::{Detected, Starter, StarterImage, StarterNode, StarterWifi};
use crate::source::catalog::{CATALOG, CatalogEntry};

mod nodes;
use nodes::{ask_lan, ask_node, hosts_in};

/// Answers refused per question before `init` gives up.
pub const MAX_TRIES: usize = 5;
/// The most nodes `init` asks about; a larger cluster is edited by hand.
pub const MAX_NODES: usize = 64;
/// Longer answers are refused unread: no answer needs more.
const MAX_ANSWER: usize = 1024;

/// Where the questions are asked and answered.
pub trait Asker {
    /// Shows `prompt` and reads one answer line (without its line end);
    /// `None` at the end of input (Ctrl-D).
    fn line(&mut self, prompt: &str) -> io::Result<Option<String>>;
    /// As [`Asker::line`], but the answer is not shown as it is typed. An
    /// interrupt (Ctrl-C) is an error of kind `Interrupted`.
    fn secret(&mut self, prompt: &str) -> io::Result<Option<String>>;
    /// Shows a line of text (a list to choose from, a refusal).
    fn say(&mut self, text: &str) -> io::Result<()>;
}

/// Why the questions ended without a profile.
#[derive(Debug, Error)]
pub enum AskError {
    #[error("no answer for {field} (end of input)")]
    Eof { field: String },
    #[error("interrupted at {field}")]
    Interrupted { field: String },
    #[error("{field}: {MAX_TRIES} answers refused, the last because {reason}")]
    TooManyTries { field: String, reason: String },
    #[error("{field}: {reason}")]
    Refused { field: String, reason: String },
    #[error("asking for {field}")]
    Io {
        field: String,
        #[source]
        source: io::Error,
    },
}

/// A passphrase typed at the terminal; never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<secret: {} bytes>", self.0.len())
    }
}

/// What an image file says it is: its OS, and the board an Armbian image
/// names in `/etc/armbian-release`.
pub type ImageFacts = (OsRelease, Option<String>);

/// What the questions need to know about the place the profile goes.
#[derive(Debug, Clone)]
pub struct Place {
    /// The directory the profile will be written to (absolute).
    pub profile_dir: PathBuf,
    /// The directory relative answers (an image path) are read from.
    pub cwd: PathBuf,
    /// `$HOME`, for `~/` in an image path.
    pub home: Option<PathBuf>,
    /// The secret file the Wi-Fi passphrase goes to, relative to the
    /// profile, and whether it exists already (and may not be replaced).
    pub wifi_file: String,
    pub wifi_file_taken: bool,
    /// Looks into an image file: its OS and, for Armbian, its board name
    /// (`None` when it cannot tell, e.g. a compressed file).
    pub image_facts: fn(&std::path::Path) -> Option<ImageFacts>,
}

/// What the user answered: the profile to write and the Wi-Fi passphrase
/// for `wifi.password_file`.
#[derive(Debug)]
pub struct Answers {
    pub starter: Starter,
    pub wifi_passphrase: Option<Secret>,
}

/// One question, asked until `parse` takes the answer.
fn ask<T>(
    a: &mut dyn Asker,
    field: &str,
    prompt: &str,
    default: Option<&str>,
    mut parse: impl FnMut(&str) -> Result<T, String>,
) -> Result<T, AskError> {
    let shown = match default {
        Some(d) => format!("{prompt} [{d}]: "),
        None => format!("{prompt}: "),
    };
    let mut reason = String::new();
    for _ in 0..MAX_TRIES {
        let answer = a
            .line(&shown)
            .map_err(|e| io_error(field, e))?
            .ok_or_else(|| AskError::Eof {
                field: field.to_owned(),
            })?;
        let answer = answer.trim();
        let answer = match default {
            Some(d) if answer.is_empty() => d,
            _ => answer,
        };
        let parsed = if answer.len() > MAX_ANSWER {
            Err(format!("an answer of more than {MAX_ANSWER} bytes"))
        } else {
            parse(answer)
        };
        match parsed {
            Ok(v) => return Ok(v),
            Err(why) => {
                a.say(&format!("  {why}")).map_err(|e| io_error(field, e))?;
                reason = why;
            }
        }
    }
    Err(AskError::TooManyTries {
        field: field.to_owned(),
        reason,
    })
}

fn io_error(field: &str, e: io::Error) -> AskError {
    if e.kind() == io::ErrorKind::Interrupted {
        AskError::Interrupted {
            field: field.to_owned(),
        }
    } else {
        AskError::Io {
            field: field.to_owned(),
            source: e,
        }
    }
}

/// Asks every question and returns the answers; nothing is written here.
pub fn ask_starter(a: &mut dyn Asker, d: &Detected, place: &Place) -> Result<Answers, AskError> {
    let detected = Starter::detected(d);
    let (image, board) = ask_image(a, place)?;
    let (subnet, gateway) = ask_lan(a, &detected)?;
    let room = hosts_in(subnet).saturating_sub(1).min(MAX_NODES);
    let count = ask(
        a,
        "node count",
        &format!("Number of nodes (1-{room})"),
        Some(&detected.nodes.len().clamp(1, room.max(1)).to_string()),
        |s| match s.parse::<usize>() {
            Ok(n) if (1..=room).contains(&n) => Ok(n),
            _ => Err(format!(
                "{s:?} is not a number from 1 to {room} (the subnet {subnet} has room for {room})"
            )),
        },
    )?;
    let mut nodes: Vec<StarterNode> = Vec::new();
    for i in 1..=count {
        nodes.push(ask_node(a, i, &nodes, subnet, gateway)?);
    }
    let (wifi, wifi_passphrase) = ask_wifi(a, place)?;
    Ok(Answers {
        starter: Starter {
            image,
            board,
            subnet,
            gateway,
            subnet_note: "the nodes' LAN",
            nodes,
            wifi,
        },
        wifi_passphrase,
    })
}

/// The base image: a catalog entry (by name or number) or a local file;
/// then the board (and, for a file, its OS).
fn ask_image(a: &mut dyn Asker, place: &Place) -> Result<(StarterImage, Board), AskError> {
    let field = "base image";
    let io = |e| io_error(field, e);
    a.say("Base images in the catalog (`homelab-image images`):")
        .map_err(io)?;
    for (i, e) in CATALOG.iter().enumerate() {
        a.say(&format!(
            "  {:>2}  {:<20} {:<12} {}",
            i + 1,
            e.name,
            e.os.to_string(),
            e.boards.join(", ")
        ))
        .map_err(io)?;
    }
    let default_entry = CATALOG
        .iter()
        .find(|e| e.os == OsRelease::Ubuntu2404 && e.boards.contains(&"rpi4"))
        .or(CATALOG.first());
    enum Choice {
        Catalog(&'static CatalogEntry),
        /// As the profile spells it, and where it is.
        File(String, PathBuf),
    }
    let choice = ask(
        a,
        field,
        "Base image: a name or number above, or the path of an image file",
        default_entry.map(|e| e.name),
        |s| {
            if let Some(e) = CATALOG.iter().find(|e| e.name == s) {
                return Ok(Choice::Catalog(e));
            }
            if let Ok(n) = s.parse::<usize>() {
                return n
                    .checked_sub(1)
                    .and_then(|i| CATALOG.get(i))
                    .map(Choice::Catalog)
                    .ok_or_else(|| format!("there is no entry {n}: pick 1 to {}", CATALOG.len()));
            }
            image_file(s, place).map(|(spelled, full)| Choice::File(spelled, full))
        },
    )?;
    match choice {
        Choice::Catalog(e) => {
            let board = if e.boards.len() > 1 {
                let boards = e.boards.join(", ");
                ask(
                    a,
                    "board",
                    &format!("Board ({boards})"),
                    e.boards.first().copied(),
                    |s| {
                        Board::parse(s)
                            .ok()
                            .filter(|b| e.supports(b))
                            .ok_or_else(|| format!("{s:?} is not one of {boards}"))
                    },
                )?
            } else {
                Board::parse(e.boards.first().copied().unwrap_or_default()).map_err(|e| {
                    AskError::Refused {
                        field: "board".to_owned(),
                        reason: e.to_string(),
                    }
                })?
            };
            Ok((StarterImage::Catalog(e), board))
        }
        Choice::File(path, full) => {
            let names = OS_NAMES.map(|(n, _)| n).join(", ");
            let facts = (place.image_facts)(&full);
            let (found_os, found_board) = match &facts {
                Some((os, board)) => (Some(*os), board.as_deref()),
                None => (None, None),
            };
            let offered_os = found_os.unwrap_or(OsRelease::Ubuntu2404).to_string();
            let os = ask(
                a,
                "image OS",
                &format!(
                    "OS of that image ({names}){}",
                    if found_os.is_some() {
                        ", as found in it"
                    } else {
                        ""
                    }
                ),
                Some(&offered_os),
                |s| {
                    OS_NAMES
                        .iter()
                        .find(|(n, _)| *n == s)
                        .map(|(_, os)| *os)
                        .ok_or_else(|| format!("{s:?} is not one of {names}"))
                },
            )?;
            let board = ask(
                a,
                "board",
                "Board (rpi4, rpi5 or an Armbian board like rock-5b)",
                Some(
                    found_board
                        .and_then(|b| Board::parse(b).ok())
                        .map_or_else(|| "rpi4".to_owned(), |b| b.to_string())
                        .as_str(),
                ),
                |s| {
                    let b = Board::parse(s).map_err(|e| e.to_string())?;
                    if os != OsRelease::Armbian && !b.is_raspberry_pi() {
                        return Err(format!("{os} images are for rpi4 or rpi5, not {b}"));
                    }
                    Ok(b)
                },
            )?;
            Ok((StarterImage::Path { os, path }, board))
        }
    }
}

const OS_NAMES: [(&str, OsRelease); 4] = [
    ("ubuntu-22.04", OsRelease::Ubuntu2204),
    ("ubuntu-24.04", OsRelease::Ubuntu2404),
    ("ubuntu-26.04", OsRelease::Ubuntu2604),
    ("armbian", OsRelease::Armbian),
];

/// An image file answer, checked to be a regular file and spelled as the
/// profile will read it: relative to the profile's directory when it lies
/// there, `~/…` as typed, else absolute.
fn image_file(s: &str, place: &Place) -> Result<(String, PathBuf), String> {
    let (full, keep_as_typed) = match (s.strip_prefix("~/"), &place.home) {
        (Some(rest), Some(home)) => (home.join(rest), true),
        (Some(_), None) => return Err("~/ needs $HOME, which is not set".to_owned()),
        (None, _) => (place.cwd.join(s), false),
    };
    let catalog = CATALOG
        .iter()
        .map(|e| e.name)
        .collect::<Vec<_>>()
        .join(", ");
    match std::fs::metadata(&full) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(format!("{} is not a regular file", full.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "{s:?} is neither a catalog name ({catalog}) nor an existing file"
            ));
        }
        Err(e) => return Err(format!("{}: {e}", full.display())),
    }
    if keep_as_typed {
        return Ok((s.to_owned(), full));
    }
    let spelled = match full.strip_prefix(&place.profile_dir) {
        Ok(rel) => rel.to_path_buf(),
        Err(_) => full.clone(),
    };
    match spelled.to_str() {
        Some(text) => Ok((text.to_owned(), full)),
        None => Err(format!("{} is not valid UTF-8", full.display())),
    }
}

/// Wi-Fi: the SSID (none skips the rest), the passphrase without echo,
/// typed twice, and the regulatory domain.
fn ask_wifi(
    a: &mut dyn Asker,
    place: &Place,
) -> Result<(Option<StarterWifi>, Option<Secret>), AskError> {
    let ssid = ask(
        a,
        "Wi-Fi SSID",
        "Wi-Fi network name (SSID) the nodes join (optional, Enter for none)",
        None,
        |s| {
            if s.is_empty() {
                Ok(None)
            } else if s.len() > 32 {
                Err(format!("an SSID is 1 to 32 bytes; this one is {}", s.len()))
            } else if s.chars().any(char::is_control) {
                Err("an SSID typed here has no control characters".to_owned())
            } else {
                Ok(Some(s.to_owned()))
            }
        },
    )?;
    let Some(ssid) = ssid else {
        return Ok((None, None));
    };
    let field = "Wi-Fi passphrase";
    if place.wifi_file_taken {
        return Err(AskError::Refused {
            field: field.to_owned(),
            reason: format!(
                "{} already exists; pass --force to overwrite it",
                place.profile_dir.join(&place.wifi_file).display()
            ),
        });
    }
    let mut reason = String::new();
    let mut passphrase = None;
    for _ in 0..MAX_TRIES {
        let first = read_secret(
            a,
            field,
            "Wi-Fi passphrase (not shown; Enter for an open network): ",
        )?;
        if first.is_empty() {
            passphrase = Some(None);
            break;
        }
        let why = if !(8..=63).contains(&first.len())
            || !first.bytes().all(|b| (0x20..=0x7e).contains(&b))
        {
            Some("a WPA passphrase is 8 to 63 printable ASCII characters".to_owned())
        } else if read_secret(a, field, "Wi-Fi passphrase again: ")? != first {
            Some("the two passphrases differ".to_owned())
        } else {
            None
        };
        match why {
            None => {
                passphrase = Some(Some(Secret(first)));
                break;
            }
            Some(why) => {
                a.say(&format!("  {why}")).map_err(|e| io_error(field, e))?;
                reason = why;
            }
        }
    }
    let Some(passphrase) = passphrase else {
        return Err(AskError::TooManyTries {
            field: field.to_owned(),
            reason,
        });
    };
    let country = ask(
        a,
        "Wi-Fi country",
        "Wi-Fi country code, like DE (optional, Enter to skip)",
        None,
        |s| {
            if s.is_empty() {
                return Ok(None);
            }
            CountryCode::parse(&s.to_ascii_uppercase())
                .map(Some)
                .map_err(|e| e.to_string())
        },
    )?;
    let wifi = StarterWifi {
        ssid,
        password_file: passphrase.as_ref().map(|_| place.wifi_file.clone()),
        country,
    };
    Ok((Some(wifi), passphrase))
}

fn read_secret(a: &mut dyn Asker, field: &str, prompt: &str) -> Result<String, AskError> {
    a.secret(prompt)
        .map_err(|e| io_error(field, e))?
        .ok_or_else(|| AskError::Eof {
            field: field.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;
    use crate::profile::net::Ipv4Cidr;

    /// Answers from a list; records what was said and asked.
    struct Script {
        answers: Vec<Option<&'static str>>,
        said: Vec<String>,
    }

    impl Script {
        fn new(answers: &[Option<&'static str>]) -> Self {
            Self {
                answers: answers.iter().rev().copied().collect(),
                said: Vec::new(),
            }
        }
        fn next(&mut self, prompt: &str) -> io::Result<Option<String>> {
            self.said.push(prompt.to_owned());
            let a = self
                .answers
                .pop()
                .unwrap_or_else(|| panic!("no answer for {prompt}"));
            Ok(a.map(str::to_owned))
        }
    }

    impl Asker for Script {
        fn line(&mut self, prompt: &str) -> io::Result<Option<String>> {
            self.next(prompt)
        }
        fn secret(&mut self, prompt: &str) -> io::Result<Option<String>> {
            self.next(prompt)
        }
        fn say(&mut self, text: &str) -> io::Result<()> {
            self.said.push(text.to_owned());
            Ok(())
        }
    }

    fn place(dir: &std::path::Path) -> Place {
        Place {
            profile_dir: dir.to_owned(),
            cwd: dir.to_owned(),
            home: None,
            wifi_file: ".homelab-state/wifi-password".to_owned(),
            wifi_file_taken: false,
            image_facts: |_| None,
        }
    }

    fn detected() -> Detected {
        Detected {
            route: Some((
                Ipv4Cidr::parse("10.0.0.0/24").unwrap(),
                Ipv4Addr::new(10, 0, 0, 1),
            )),
            ..Detected::default()
        }
    }

    #[test]
    fn an_image_file_is_spelled_relative_to_the_profile_and_asks_os_and_board() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("img")).unwrap();
        std::fs::write(dir.path().join("img/base.img"), b"x").unwrap();
        let mut s = Script::new(&[
            Some("img/nothing.img"),
            Some("img"),
            Some("img/base.img"),
            Some("armbian"),
            Some("rock-5b"),
            Some(""),
            Some(""),
            Some("1"),
            Some(""),
            Some(""),
            Some(""),
            Some(""),
        ]);
        let a = ask_starter(&mut s, &detected(), &place(dir.path())).unwrap();
        assert_eq!(
            a.starter.image,
            StarterImage::Path {
                os: OsRelease::Armbian,
                path: "img/base.img".to_owned()
            }
        );
        assert_eq!(a.starter.board, Board::Armbian("rock-5b".to_owned()));
        assert_eq!(a.starter.nodes[0].address.to_string(), "10.0.0.11/24");
        assert!(a.starter.wifi.is_none() && a.wifi_passphrase.is_none());
        assert!(s.said.iter().any(|l| l.contains("neither a catalog name")));
        assert!(s.said.iter().any(|l| l.contains("is not a regular file")));
    }

    #[test]
    fn ubuntu_on_an_armbian_board_is_refused_for_an_image_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b.img"), b"x").unwrap();
        let mut s = Script::new(&[Some("b.img"), Some(""), Some("rock-5b"), None]);
        let e = ask_starter(&mut s, &detected(), &place(dir.path())).unwrap_err();
        assert!(
            matches!(&e, AskError::Eof { field } if field == "board"),
            "{e}"
        );
        assert!(
            s.said
                .iter()
                .any(|l| l.contains("ubuntu-24.04 images are for rpi4 or rpi5, not rock-5b"))
        );
    }

    #[test]
    fn a_taken_wifi_file_stops_before_the_passphrase_is_typed() {
        let dir = tempfile::tempdir().unwrap();
        let mut p = place(dir.path());
        p.wifi_file_taken = true;
        let mut s = Script::new(&[
            Some(""),
            Some(""),
            Some(""),
            Some(""),
            Some("1"),
            Some(""),
            Some(""),
            Some(""),
            Some("net"),
        ]);
        let e = ask_starter(&mut s, &detected(), &p).unwrap_err();
        assert!(
            e.to_string().contains("already exists; pass --force"),
            "{e}"
        );
        assert!(!s.said.iter().any(|l| l.contains("passphrase (not shown")));
    }

    #[test]
    fn the_secret_is_not_in_debug_output() {
        let s = Secret("hunter22hunter".to_owned());
        assert_eq!(format!("{s:?}"), "<secret: 14 bytes>");
    }
}
