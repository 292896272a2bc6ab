//! The Examples section of every `--help` (and of the man page, which is
//! made from the same command tree), kept in one table so each command
//! shows how it is typed; a command whose help text carries its own
//! Examples (`init`, `check`, `firmware …`) keeps those. `cli::command()` adds them; a test checks that
//! every command has one.

/// `(command path, examples)`: one example per line, `#` comments allowed.
const EXAMPLES: &[(&str, &str)] = &[
    (
        "",
        "homelab-image init                 # a starter homelab.yaml
homelab-image check                # what is wrong with it, all at once
homelab-image build --all          # out/NODE.img for every node
sudo homelab-image flash --node pi1 /dev/sdb",
    ),
    (
        "render",
        "homelab-image render --node pi1 | less
homelab-image render --node pi1 --out /tmp/pi1-files",
    ),
    (
        "build",
        "homelab-image build --node pi1
homelab-image build --all --jobs 2
homelab-image build --node pi1 --dry-run --json",
    ),
    (
        "inspect",
        "homelab-image inspect out/pi1.img
homelab-image inspect --json out/pi1.img | jq .partitions",
    ),
    (
        "ls",
        "homelab-image ls out/pi1.img system-boot
homelab-image ls -l out/pi1.img writable /etc/netplan",
    ),
    (
        "cat",
        "homelab-image cat out/pi1.img system-boot user-data
homelab-image cat out/pi1.img 2 /etc/hostname",
    ),
    (
        "cp",
        "homelab-image cp out/pi1.img writable motd /etc/motd
homelab-image cp -r --owner 1000:1000 out/pi1.img 2 dotfiles/. /home/ops/",
    ),
    (
        "rm",
        "homelab-image rm out/pi1.img writable /etc/motd
homelab-image rm -f out/pi1.img system-boot README",
    ),
    (
        "images",
        "homelab-image images
homelab-image images --json | jq '.[].name'",
    ),
    (
        "pull",
        "homelab-image pull                         # what the profile needs
homelab-image pull ubuntu-24.04-raspi
homelab-image pull --mirror http://mirror.lan/ubuntu ubuntu-24.04-raspi
homelab-image pull ./ubuntu-24.04.3-preinstalled-server-arm64+raspi.img.xz",
    ),
    (
        "cache",
        "homelab-image cache list
homelab-image cache verify
homelab-image cache prune",
    ),
    (
        "cache list",
        "homelab-image cache list
homelab-image cache list --json",
    ),
    (
        "cache verify",
        "homelab-image cache verify
homelab-image cache verify 3f2a --remove",
    ),
    (
        "cache prune",
        "homelab-image cache prune
homelab-image cache prune --all",
    ),
    (
        "devices",
        "homelab-image devices
homelab-image devices --check /dev/sdb --image out/pi1.img",
    ),
    (
        "flash",
        "sudo homelab-image flash out/pi1.img /dev/sdb
sudo homelab-image flash --node pi1            # asks which disk
sudo homelab-image flash --all --to pi1=/dev/sdb,pi2=/dev/sdc",
    ),
    (
        "serve",
        "sudo homelab-image serve
homelab-image serve --port-base 10000 --node pi1   # no root needed
homelab-image serve --status-only --port-base 8000",
    ),
    (
        "firmware",
        "homelab-image firmware presets
homelab-image firmware card --preset boot-usb-sd --board rpi4 --out pi4.img
homelab-image firmware show pi4.img",
    ),
    (
        "status",
        "homelab-image status
homelab-image status --watch                  # until every node is done
homelab-image status --node pi1 --json
homelab-image status --serve http://192.168.1.10 --watch",
    ),
    (
        "completions",
        "homelab-image completions bash > /etc/bash_completion.d/homelab-image
homelab-image completions zsh > ~/.zfunc/_homelab-image",
    ),
    (
        "manpage",
        "homelab-image manpage > homelab-image.1 && man ./homelab-image.1",
    ),
];

/// The examples of the command at `path` (`""` for the top level,
/// `"cache list"` for a nested one).
pub fn examples(path: &str) -> Option<&'static str> {
    EXAMPLES.iter().find(|(p, _)| *p == path).map(|(_, e)| *e)
}

/// Adds an Examples section after each command's help text, recursively.
pub fn add_examples(cmd: clap::Command, path: &str) -> clap::Command {
    // A command whose own help text already ends in examples keeps those.
    let has_own = cmd
        .get_after_help()
        .is_some_and(|h| h.to_string().contains("Examples:\n"));
    let mut cmd = match examples(path).filter(|_| !has_own) {
        Some(text) => {
            let mut section = String::from("Examples:\n");
            for line in text.lines() {
                section.push_str("  ");
                section.push_str(line);
                section.push('\n');
            }
            let section = section.trim_end().to_string();
            let after = match cmd.get_after_help() {
                Some(before) => format!("{before}\n\n{section}"),
                None => section,
            };
            cmd.after_help(after)
        }
        None => cmd,
    };
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        let sub_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path} {name}")
        };
        cmd = cmd.mut_subcommand(&name, |sub| add_examples(sub, &sub_path));
    }
    cmd
}
