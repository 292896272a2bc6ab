//! `out/proxmox.sh`: a script for the Proxmox VE host that creates one VM
//! per amd64 `board: vm` node with `qm create`, importing the node's built
//! image as its disk. A pure function of the cluster: no secret goes in
//! (names, sizes, MACs and bridges only), the same profile gives the same
//! bytes.
//!
//! The seed is inside the image (so no Proxmox cloud-init drive) and the
//! image is already grown to `vm.disk_size` (so no `qm resize`). Ubuntu's
//! cloud images boot with Proxmox's default SeaBIOS through their BIOS-boot
//! partition, as in the Proxmox admin guide's cloud-init recipe
//! (qm-cloud-init.adoc: `--scsi0 STORAGE:0,import-from=…`, `--boot
//! order=scsi0`, `--serial0 socket --vga serial0`), so no OVMF disk. Proxmox
//! VE runs amd64 guests only ("only concerned with 32 and 64 bits PC clone
//! emulation", qm.adoc): arm64 nodes are listed as skipped. docs/VMS.md.

use std::fmt::Write as _;

use crate::profile::platform::Arch;
use crate::profile::resolved::{Cluster, ResolvedNode};
use crate::profile::vm::Vm;

/// The script's file name in the output directory.
pub const FILE_NAME: &str = "proxmox.sh";

/// The script, or `None` when the cluster has no vm node.
pub fn script(cluster: &Cluster) -> Option<String> {
    let vms: Vec<(&ResolvedNode, &Vm)> = cluster
        .nodes
        .iter()
        .filter_map(|n| n.vm.as_ref().map(|vm| (n, vm)))
        .collect();
    if vms.is_empty() {
        return None;
    }
    let mut table = String::new();
    for (node, vm) in &vms {
        let name = node.hostname.as_str();
        if node.arch != Arch::Amd64 {
            // Infallible: writing to a String.
            let _ = writeln!(
                table,
                "# {name} is {}: left out, Proxmox VE runs amd64 guests only \
                 (docs/VMS.md: libvirt or LXD on an arm64 host)",
                node.arch
            );
            continue;
        }
        // The MAC is always set for a vm node (derived from the hostname
        // when the profile has none); resolve guarantees it.
        let Some(mac) = node.network.mac else {
            continue;
        };
        let _ = writeln!(
            table,
            "# {name}: {}, {} cores, disk {} (grown by build), bridge {}",
            vm.memory, vm.cores, vm.disk_size, vm.bridge
        );
        let _ = writeln!(
            table,
            "vm {} {} {} {} {} {}",
            quote(name),
            quote(&vm.vmid.map(|id| id.to_string()).unwrap_or_default()),
            quote(&vm.memory.mib().to_string()),
            quote(&vm.cores.to_string()),
            quote(&mac.to_string()),
            quote(vm.bridge.as_str()),
        );
    }
    Some(format!("{HEAD}{table}{BODY}"))
}

/// `s` in single quotes, each `'` inside closed, escaped and reopened: one
/// word to the shell whatever it holds.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

const HEAD: &str = r#"#!/usr/bin/env bash
# proxmox.sh: the VMs of a homelab-image profile, for its Proxmox VE host.
# Written by `homelab-image build` next to the images (rebuild rather than
# edit). Copy the output directory to the host and run:
#
#   bash proxmox.sh [--dry-run] [NODE...]
#
# One VM per amd64 `board: vm` node (or per NODE named), its disk imported
# from IMAGE_DIR/NODE.img: the image holds the node's cloud-init seed and is
# already grown to vm.disk_size, so there is no cloud-init drive and no
# resize. Nothing is created when an image is missing or a VM id or name is
# taken. --dry-run prints the qm commands instead of running them (it still
# asks qm and pvesh, read-only, what exists and which ids are free).
#
#   STORAGE    the storage the disks are imported into (default local-lvm)
#   IMAGE_DIR  the directory of the NODE.img files (default: this script's)
#
# docs/VMS.md
set -euo pipefail

STORAGE=${STORAGE:-local-lvm}
IMAGE_DIR=${IMAGE_DIR:-$(dirname -- "${BASH_SOURCE[0]}")}

names=()
vmids=()
memory=()
cores=()
macs=()
bridges=()
# vm NAME VMID MEMORY_MIB CORES MAC BRIDGE (VMID '': the next free one)
vm() {
  names+=("$1")
  vmids+=("$2")
  memory+=("$3")
  cores+=("$4")
  macs+=("$5")
  bridges+=("$6")
}

"#;

const BODY: &str = r#"
usage='usage: bash proxmox.sh [--dry-run] [NODE...]'
die() {
  printf 'proxmox.sh: %s\n' "$*" >&2
  exit 1
}

dry_run=false
wanted=()
for arg in "$@"; do
  case $arg in
    --dry-run) dry_run=true ;;
    -h | --help)
      printf '%s\n' "$usage"
      exit 0
      ;;
    -*) die "unknown option $arg ($usage)" ;;
    *) wanted+=("$arg") ;;
  esac
done

((${#names[@]} > 0)) || die "the profile has no amd64 vm node to create"

# The nodes to create, by index, each once.
chosen=()
if ((${#wanted[@]} == 0)); then
  chosen=("${!names[@]}")
else
  for w in "${wanted[@]}"; do
    found=''
    for i in "${!names[@]}"; do
      if [[ ${names[i]} == "$w" ]]; then found=$i; fi
    done
    [[ -n $found ]] || die "$w is not an amd64 vm node of this profile (those are: ${names[*]})"
    if [[ " ${chosen[*]} " != *" $found "* ]]; then chosen+=("$found"); fi
  done
fi

command -v qm >/dev/null || die "qm not found: run proxmox.sh on the Proxmox VE host"
command -v pvesh >/dev/null || die "pvesh not found: run proxmox.sh on the Proxmox VE host"
storage_id='^[A-Za-z][A-Za-z0-9._-]*$'
[[ $STORAGE =~ $storage_id ]] || die "STORAGE=$STORAGE is not a Proxmox storage id, like local-lvm"
[[ -d $IMAGE_DIR ]] || die "IMAGE_DIR=$IMAGE_DIR is not a directory"
IMAGE_DIR=$(cd -- "$IMAGE_DIR" && pwd -P)
# qm reads import-from=PATH up to the next comma.
[[ $IMAGE_DIR != *,* ]] || die "IMAGE_DIR=$IMAGE_DIR has a comma, which qm's import-from cannot take"

# Everything is checked before anything is created.
existing=$(qm list | awk 'NR > 1 { print $2 }')
# Every id the profile gives stays reserved, for its node, even when that
# node is not created in this run.
taken=()
for id in "${vmids[@]}"; do
  if [[ -n $id ]]; then taken+=("$id"); fi
done
problems=0
problem() {
  printf 'proxmox.sh: %s\n' "$*" >&2
  problems=$((problems + 1))
}
for i in "${chosen[@]}"; do
  name=${names[i]}
  id=${vmids[i]}
  [[ -f $IMAGE_DIR/$name.img ]] ||
    problem "$IMAGE_DIR/$name.img is missing: build node $name, or set IMAGE_DIR"
  if grep -qxF -- "$name" <<<"$existing"; then
    problem "a VM named $name exists already (qm list): remove it, or name the other nodes only"
  fi
  if [[ -n $id ]]; then
    if qm status "$id" >/dev/null 2>&1; then
      problem "VM $id (vm.vmid of $name) exists already (qm status $id): remove it or change vm.vmid"
    elif ! pvesh get /cluster/nextid --vmid "$id" >/dev/null 2>&1; then
      problem "VM id $id (vm.vmid of $name) is taken in the cluster: change vm.vmid"
    fi
  fi
done
((problems == 0)) || die "nothing created"

# A free id that no node of this run has: Proxmox's next one, counted up
# past ours (a dry run creates none, so Proxmox keeps offering the same).
next_free() {
  local id tries=0
  id=$(pvesh get /cluster/nextid)
  [[ $id =~ ^[0-9]+$ ]] || die "pvesh get /cluster/nextid gave no VM id: $id"
  while [[ " ${taken[*]} " == *" $id "* ]] ||
    ! pvesh get /cluster/nextid --vmid "$id" >/dev/null 2>&1; do
    id=$((id + 1))
    tries=$((tries + 1))
    ((tries < 1000)) || die "no free VM id in the 1000 from $((id - tries)) on: set vm.vmid"
  done
  printf '%s\n' "$id"
}
for i in "${chosen[@]}"; do
  if [[ -z ${vmids[i]} ]]; then
    vmids[i]=$(next_free)
    taken+=("${vmids[i]}")
  fi
done

# The command as one shell line: plain words bare, others quoted.
show() {
  local a words=() plain='^[A-Za-z0-9_./:=,@+-]+$'
  for a in "$@"; do
    if [[ $a =~ $plain ]]; then words+=("$a"); else words+=("$(printf '%q' "$a")"); fi
  done
  printf '%s\n' "${words[*]}"
}
run() {
  if $dry_run; then show "$@"; else "$@"; fi
}

for i in "${chosen[@]}"; do
  name=${names[i]}
  id=${vmids[i]}
  run qm create "$id" --name "$name" --memory "${memory[i]}" --cores "${cores[i]}" --cpu host \
    --scsihw virtio-scsi-single --scsi0 "$STORAGE:0,import-from=$IMAGE_DIR/$name.img" \
    --boot order=scsi0 --serial0 socket --vga serial0 \
    --net0 "virtio=${macs[i]},bridge=${bridges[i]}" --ostype l26
  $dry_run || printf 'created VM %s (%s): qm start %s\n' "$id" "$name" "$id"
done
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_one_word() {
        assert_eq!(quote("vm1"), "'vm1'");
        assert_eq!(quote(""), "''");
        assert_eq!(quote("a'b"), r"'a'\''b'");
    }
}
