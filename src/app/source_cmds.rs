//! `images`, `pull` and `cache`: the base-image commands. They turn the
//! command line into a `SourceSpec` and `SourceOptions`, call
//! `source::ensure_base`, and print results on stdout (progress and
//! narrative go to stderr).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};

use crate::cli::GlobalArgs;
use crate::cli::source_cmds::{CacheArgs, CacheCommand, FetchArgs, ImagesArgs, PullArgs};
use crate::io::units::human_size;
use crate::source::{
    self, CATALOG, Cache, Entry, HttpOptions, Keyring, Progress, SourceOptions, SourceSpec,
    Verdict, catalog, fingerprint::Quick, http::parse_url, k3s, redact,
};

use super::write_stdout;

/// One catalog entry as `images --json` prints it.
#[derive(serde::Serialize)]
struct CatalogRow {
    name: &'static str,
    os: String,
    arch: &'static str,
    boards: &'static [&'static str],
    description: &'static str,
    /// Where the newest release is looked up.
    from: &'static str,
}

pub fn images(args: &ImagesArgs) -> Result<()> {
    let text = if args.json {
        let rows: Vec<CatalogRow> = CATALOG
            .iter()
            .map(|e| CatalogRow {
                name: e.name,
                os: e.os.to_string(),
                arch: e.arch.name(),
                boards: e.boards,
                description: e.description,
                from: e.origin(),
            })
            .collect();
        let mut json = serde_json::to_string_pretty(&rows).context("encoding the catalog")?;
        json.push('\n');
        json
    } else {
        // The host alone keeps the table inside 80 columns; --json gives
        // the whole URL.
        let name_w = CATALOG.iter().map(|e| e.name.len()).max().unwrap_or(4);
        let boards = |e: &source::CatalogEntry| e.boards.join(",");
        let boards_w = CATALOG.iter().map(|e| boards(e).len()).max().unwrap_or(6);
        let mut text = format!(
            "{:<name_w$} {:<12} {:<5} {:<boards_w$} {}\n",
            "NAME", "OS", "ARCH", "BOARDS", "FROM"
        );
        for e in CATALOG {
            let origin = e.origin();
            let host = origin
                .split_once("://")
                .map_or(origin, |(_, rest)| rest.split('/').next().unwrap_or(rest));
            text.push_str(&format!(
                "{:<name_w$} {:<12} {:<5} {:<boards_w$} {host}\n",
                e.name,
                e.os.to_string(),
                e.arch.name(),
                boards(e),
            ));
        }
        text.push_str(
            "\nUbuntu raspi entries resolve to the newest point release listed in the\n\
             signed SHA256SUMS; cloud entries (qcow2, board vm) to the newest\n\
             release-YYYYMMDD[.N] build serial in the series directory, checked against\n\
             its signed SHA256SUMS; Armbian entries to the newest build behind the link\n\
             (.sha + .asc).\n",
        );
        text
    };
    write_stdout(&mut std::io::stdout().lock(), text.as_bytes())
}

pub fn pull(global: &GlobalArgs, args: &PullArgs) -> Result<()> {
    let opts = source_options(global, &args.fetch)?;
    let progress = Progress::for_stderr(global.quiet);
    let (specs, cluster) = match &args.source {
        Some(s) => (vec![parse_source(s, args)?], None),
        None => {
            if args.sha256.is_some() || args.checksums.is_some() {
                bail!("--sha256 and --checksums need an image URL or file to go with");
            }
            let resolved = super::profile_cmds::load_and_resolve(&global.profile)?;
            (profile_specs(&resolved.cluster), Some(resolved.cluster))
        }
    };
    for spec in &specs {
        // URL and file errors name the URL or file; a catalog entry's
        // errors name the URLs it resolved to, so say which entry.
        let image = match spec {
            SourceSpec::Catalog(e) => source::ensure_base(spec, &opts, &progress)
                .with_context(|| format!("pulling {}", e.name))?,
            _ => source::ensure_base(spec, &opts, &progress)?,
        };
        let line = format!("{}\n", image.raw_path.display());
        write_stdout(&mut std::io::stdout().lock(), line.as_bytes())?;
    }
    // A k3s profile's release files, once per architecture.
    let mut pulled = Vec::new();
    for node in cluster
        .iter()
        .flat_map(|c| c.nodes.iter().map(move |n| (c, n)))
    {
        let (cluster, node) = node;
        let arch = crate::profile::k3s::node_arch(node);
        if pulled.contains(&arch) {
            continue;
        }
        pulled.push(arch);
        let files = crate::build::k3s_files::fetch(cluster, node, &opts, &progress)?;
        for blob in files.binary.iter().chain(&files.airgap) {
            let line = format!("{}\n", blob.path.display());
            write_stdout(&mut std::io::stdout().lock(), line.as_bytes())?;
        }
    }
    Ok(())
}

pub fn cache(global: &GlobalArgs, args: &CacheArgs) -> Result<()> {
    let root = cache_root(global)?;
    let cache =
        Cache::open(&root).with_context(|| format!("opening the cache {}", root.display()))?;
    match &args.command {
        CacheCommand::List { json: false } => cache_list(&cache),
        CacheCommand::List { json: true } => cache_list_json(&cache),
        CacheCommand::Verify { sha256, remove } => {
            cache_verify(&cache, sha256.as_deref(), *remove, global.quiet)
        }
        CacheCommand::Prune { all } => {
            let report = cache
                .prune(*all)
                .with_context(|| format!("pruning the cache {}", root.display()))?;
            let line = format!(
                "removed {} file{}, freed {} ({})\n",
                report.files,
                if report.files == 1 { "" } else { "s" },
                human_size(report.freed),
                root.display()
            );
            write_stdout(&mut std::io::stdout().lock(), line.as_bytes())
        }
    }
}

fn cache_list(cache: &Cache) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mut text = format!("cache {}\n", cache.root().display());
    let entries = cache.entries();
    if entries.is_empty() {
        text.push_str("no images\n");
    } else {
        text.push_str(&format!(
            "{:<12}  {:>9}  {:>9}  {:<10}  {}\n",
            "SHA256", "SIZE", "ON DISK", "ADDED", "SOURCE"
        ));
    }
    let mut damaged = 0;
    for entry in &entries {
        let on_disk = std::fs::metadata(&entry.raw_path).map_or(0, |m| m.blocks() * 512);
        let (size, added, from) = match &entry.meta {
            Ok(meta) => {
                let added = crate::time::format_utc(i64::try_from(meta.created).unwrap_or(0));
                let source = redact::text(&meta.source);
                let from = if source.ends_with(&meta.file_name) && meta.serial.is_none() {
                    source
                } else {
                    format!("{source} ({})", meta.release_name())
                };
                (
                    human_size(meta.size),
                    added.get(..10).unwrap_or(&added).to_owned(),
                    from,
                )
            }
            Err(_) => ("?".to_owned(), "?".to_owned(), "?".to_owned()),
        };
        let from = match &entry.health {
            Quick::Intact => from,
            Quick::Unsure(why) => format!("{from} — unverified: {why}"),
            Quick::Damaged(why) => {
                damaged += 1;
                format!("DAMAGED: {why}")
            }
        };
        text.push_str(&format!(
            "{:<12}  {size:>9}  {:>9}  {added:<10}  {from}\n",
            entry.sha256.short(),
            human_size(on_disk),
        ));
    }
    if damaged > 0 {
        text.push_str(&format!(
            "{damaged} damaged: `homelab-image cache verify --remove` deletes {}\n",
            if damaged == 1 { "it" } else { "them" }
        ));
    }
    text.push_str(&k3s_list(cache));
    for (path, len) in cache.partial_downloads() {
        text.push_str(&format!(
            "partial download {} ({})\n",
            path.display(),
            human_size(len)
        ));
    }
    write_stdout(&mut std::io::stdout().lock(), text.as_bytes())
}

/// The k3s downloads in the cache, a table after the images' (nothing
/// when there are none).
fn k3s_list(cache: &Cache) -> String {
    let entries = k3s::entries(cache);
    if entries.is_empty() {
        return String::new();
    }
    let mut text = format!(
        "\nk3s downloads\n{:<12}  {:>9}  {:<10}  {:<16}  {:<6}  {}\n",
        "SHA256", "SIZE", "ADDED", "VERSION", "ARCH", "FILE"
    );
    for e in &entries {
        let line = match &e.record {
            Ok(r) => {
                let added = crate::time::format_utc(i64::try_from(r.created).unwrap_or(0));
                let file = match &e.health {
                    Quick::Intact => r.file_name.clone(),
                    Quick::Unsure(why) => format!("{} — unverified: {why}", r.file_name),
                    Quick::Damaged(why) => format!("{} — DAMAGED: {why}", r.file_name),
                };
                format!(
                    "{:<12}  {:>9}  {:<10}  {:<16}  {:<6}  {file}\n",
                    r.sha256.short(),
                    human_size(r.size),
                    added.get(..10).unwrap_or(&added),
                    r.version,
                    r.arch,
                )
            }
            Err(why) => format!(
                "{:<12}  {:>9}  {:<10}  {:<16}  {:<6}  DAMAGED: {why}\n",
                "?", "?", "?", "?", "?"
            ),
        };
        text.push_str(&line);
    }
    text
}

/// One cached image as `cache list --json` prints it; `null` where the
/// metadata cannot be read.
#[derive(serde::Serialize)]
struct CacheRow {
    sha256: String,
    path: std::path::PathBuf,
    size: Option<u64>,
    on_disk: u64,
    /// When it was cached, RFC 3339 UTC.
    added: Option<String>,
    /// The catalog name, URL or path it was pulled as.
    source: Option<String>,
    file_name: Option<String>,
    /// A cloud image's build serial.
    serial: Option<String>,
    /// `intact`, `unsure` (re-hash to know) or `damaged`.
    health: &'static str,
    /// Why it is unsure or damaged.
    problem: Option<String>,
}

#[derive(serde::Serialize)]
struct PartialRow {
    path: std::path::PathBuf,
    size: u64,
}

/// One cached k3s download as `cache list --json` prints it; `null` where
/// its record cannot be read.
#[derive(serde::Serialize)]
struct K3sRow {
    version: Option<String>,
    arch: Option<String>,
    /// `binary` or `airgap-images`.
    asset: Option<String>,
    file_name: Option<String>,
    sha256: Option<String>,
    path: Option<std::path::PathBuf>,
    size: Option<u64>,
    added: Option<String>,
    url: Option<String>,
    record: std::path::PathBuf,
    health: &'static str,
    problem: Option<String>,
}

#[derive(serde::Serialize)]
struct CacheListing {
    cache: std::path::PathBuf,
    images: Vec<CacheRow>,
    k3s: Vec<K3sRow>,
    partial_downloads: Vec<PartialRow>,
}

fn rfc3339(secs: u64) -> String {
    let utc = crate::time::format_utc(i64::try_from(secs).unwrap_or(0));
    format!("{}Z", utc.replacen(' ', "T", 1))
}

fn health_of(q: &Quick) -> (&'static str, Option<String>) {
    match q {
        Quick::Intact => ("intact", None),
        Quick::Unsure(why) => ("unsure", Some(why.clone())),
        Quick::Damaged(why) => ("damaged", Some(why.clone())),
    }
}

fn cache_list_json(cache: &Cache) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let images = cache
        .entries()
        .into_iter()
        .map(|entry| {
            let meta = entry.meta.as_ref().ok();
            let (health, problem) = match &entry.health {
                Quick::Intact => ("intact", None),
                Quick::Unsure(why) => ("unsure", Some(why.clone())),
                Quick::Damaged(why) => ("damaged", Some(why.clone())),
            };
            CacheRow {
                sha256: entry.sha256.to_string(),
                on_disk: std::fs::metadata(&entry.raw_path).map_or(0, |m| m.blocks() * 512),
                path: entry.raw_path,
                size: meta.map(|m| m.size),
                added: meta.map(|m| {
                    let utc = crate::time::format_utc(i64::try_from(m.created).unwrap_or(0));
                    format!("{}Z", utc.replacen(' ', "T", 1))
                }),
                source: meta.map(|m| redact::text(&m.source)),
                file_name: meta.map(|m| m.file_name.clone()),
                serial: meta.and_then(|m| m.serial.clone()),
                health,
                problem,
            }
        })
        .collect();
    let k3s = k3s::entries(cache)
        .into_iter()
        .map(|e| {
            let r = e.record.as_ref().ok();
            let (health, problem) = health_of(&e.health);
            K3sRow {
                version: r.map(|r| r.version.clone()),
                arch: r.map(|r| r.arch.clone()),
                asset: r.map(|r| r.asset.clone()),
                file_name: r.map(|r| r.file_name.clone()),
                sha256: r.map(|r| r.sha256.to_string()),
                path: e.blob.clone(),
                size: r.map(|r| r.size),
                added: r.map(|r| rfc3339(r.created)),
                url: r.map(|r| redact::text(&r.url)),
                record: e.record_path,
                health,
                problem,
            }
        })
        .collect();
    let partial_downloads = cache
        .partial_downloads()
        .into_iter()
        .map(|(path, size)| PartialRow { path, size })
        .collect();
    let listing = CacheListing {
        cache: cache.root().to_path_buf(),
        images,
        k3s,
        partial_downloads,
    };
    let mut json = serde_json::to_string_pretty(&listing).context("encoding the cache listing")?;
    json.push('\n');
    write_stdout(&mut std::io::stdout().lock(), json.as_bytes())
}

/// Something `cache verify` re-hashes: a cached image or a k3s download.
enum Checked {
    Image(Entry),
    K3s(k3s::K3sEntry),
}

impl Checked {
    /// The hash it is cached under (none for an unreadable k3s record).
    fn sha256(&self) -> Option<source::Sha256> {
        match self {
            Self::Image(e) => Some(e.sha256),
            Self::K3s(e) => e.record.as_ref().ok().map(|r| r.sha256),
        }
    }

    /// The file a line of output names.
    fn path(&self) -> &std::path::Path {
        match self {
            Self::Image(e) => &e.raw_path,
            Self::K3s(e) => e.blob.as_deref().unwrap_or(&e.record_path),
        }
    }

    fn verify(&self, cache: &Cache, progress: &Progress) -> Verdict {
        match self {
            Self::Image(e) => cache.verify(e, progress),
            Self::K3s(e) => k3s::verify(e, progress),
        }
    }

    fn remove(&self, cache: &Cache) -> Result<()> {
        match self {
            Self::Image(e) => cache.remove(e).map(drop),
            Self::K3s(e) => k3s::remove(e).map(drop),
        }
        .with_context(|| format!("removing {}", self.path().display()))
    }
}

/// `cache verify`: re-hashes the chosen entries (images, then k3s
/// downloads); one line per entry on stdout, an error naming the damaged
/// ones.
fn cache_verify(cache: &Cache, prefix: Option<&str>, remove: bool, quiet: bool) -> Result<()> {
    let mut entries: Vec<Checked> = cache.entries().into_iter().map(Checked::Image).collect();
    entries.extend(k3s::entries(cache).into_iter().map(Checked::K3s));
    if let Some(p) = prefix {
        let p = p.to_ascii_lowercase();
        if p.is_empty() || !p.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("{p:?} is not the start of a SHA-256 (hexadecimal digits)");
        }
        entries.retain(|e| e.sha256().is_some_and(|s| s.to_string().starts_with(&p)));
        match entries.len() {
            0 => {
                bail!("no cached image's SHA-256 starts with {p} (see `homelab-image cache list`)")
            }
            1 => {}
            n => bail!("{n} cached images' SHA-256 start with {p}: give more digits"),
        }
    }
    let progress = Progress::for_stderr(quiet);
    let mut bad: Vec<(&Checked, String)> = Vec::new();
    let mut out = std::io::stdout().lock();
    for entry in &entries {
        let line = match entry.verify(cache, &progress) {
            Verdict::Good => format!("ok       {}\n", entry.path().display()),
            Verdict::Bad(why) => {
                let line = format!("DAMAGED  {}: {why}\n", entry.path().display());
                bad.push((entry, why));
                line
            }
        };
        write_stdout(&mut out, line.as_bytes())?;
    }
    if entries.is_empty() {
        write_stdout(&mut out, b"no images\n")?;
    }
    if bad.is_empty() {
        return Ok(());
    }
    let names: Vec<String> = bad
        .iter()
        .map(|(e, why)| format!("{} ({why})", e.path().display()))
        .collect();
    let (n, s, them) = if bad.len() == 1 {
        (1, "", "it")
    } else {
        (bad.len(), "s", "them")
    };
    if remove {
        for (entry, _) in &bad {
            entry.remove(cache)?;
        }
        bail!(
            "{n} damaged cached image{s}, removed (the next pull or build makes {them} \
             again): {}",
            names.join("; ")
        );
    }
    bail!(
        "{n} damaged cached image{s}: {}; `homelab-image cache verify --remove` deletes {them}",
        names.join("; ")
    )
}

/// What the user named: a URL, a catalog entry, or a file.
fn parse_source(s: &str, args: &PullArgs) -> Result<SourceSpec> {
    let sha256 = args
        .sha256
        .as_deref()
        .map(|h| h.parse::<source::Sha256>())
        .transpose()
        .context("--sha256")?;
    if s.contains("://") {
        let url = parse_url(s)?;
        return match (sha256, &args.checksums) {
            (Some(sha256), _) => Ok(SourceSpec::UrlSha256 { url, sha256 }),
            (None, Some(sums)) => Ok(SourceSpec::UrlChecksums {
                url,
                checksums: parse_url(sums).context("--checksums")?,
                signature: args
                    .signature
                    .as_deref()
                    .map(parse_url)
                    .transpose()
                    .context("--signature")?,
            }),
            (None, None) => bail!(
                "{s}: an image URL needs its checksum: --sha256 HEX, or --checksums URL \
                 of a signed checksum file"
            ),
        };
    }
    if let Some(entry) = catalog::find(s) {
        if sha256.is_some() || args.checksums.is_some() {
            bail!(
                "{s} is a catalog image, checked against its publisher's signed checksums; \
                 --sha256 and --checksums go with a URL or a file"
            );
        }
        return Ok(SourceSpec::Catalog(entry));
    }
    let path = PathBuf::from(s);
    if !path.is_file() {
        bail!(
            "{s} is not a catalog image (see `homelab-image images`: {}), an http(s) URL \
             or an image file",
            catalog::names()
        );
    }
    if args.checksums.is_some() {
        bail!("--checksums goes with a URL; give a local file's checksum with --sha256");
    }
    Ok(SourceSpec::Path { path, sha256 })
}

/// The distinct base images of the profile's nodes, in node order.
fn profile_specs(cluster: &crate::profile::Cluster) -> Vec<SourceSpec> {
    let mut specs: Vec<SourceSpec> = Vec::new();
    for node in &cluster.nodes {
        let spec = SourceSpec::for_node(&node.image);
        if !specs.contains(&spec) {
            specs.push(spec);
        }
    }
    specs
}

pub(crate) fn cache_root(global: &GlobalArgs) -> Result<PathBuf> {
    match &global.cache_dir {
        Some(d) => Ok(d.clone()),
        None => Ok(Cache::default_root()?),
    }
}

/// The options `ensure_base` needs, from the global and fetch flags.
pub fn source_options(global: &GlobalArgs, fetch: &FetchArgs) -> Result<SourceOptions> {
    let mut trusted_keys = Keyring::default();
    for path in &fetch.trusted_key {
        trusted_keys
            .add_file(path)
            .with_context(|| "--trusted-key".to_owned())?;
    }
    let mirror = fetch
        .mirror
        .as_deref()
        .map(parse_url)
        .transpose()
        .context("--mirror")?;
    if fetch.insecure_skip_signature {
        let _ = writeln!(
            std::io::stderr(),
            "warning: --insecure-skip-signature: images are checked against checksums \
             nobody vouched for"
        );
    }
    Ok(SourceOptions {
        cache_dir: cache_root(global)?,
        http: HttpOptions {
            connect_timeout: fetch.connect_timeout,
            read_timeout: fetch.read_timeout,
            retries: fetch.retries,
            retry_delay: fetch.retry_delay,
            mirror,
        },
        trusted_keys,
        skip_signature: fetch.insecure_skip_signature,
        threads: fetch.threads.unwrap_or_else(source::default_threads),
    })
}
