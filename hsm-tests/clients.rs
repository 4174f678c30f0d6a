//! The client helpers (`harness/clients.rs`) proven on repositories that tufkey did not
//! write: one built here with python-tuf's own Metadata API (`hsm-tests/clients/build_repo.py`)
//! and the real-world repositories in `../shared/interop/realworld`.
//!
//! Both clients — python-tuf's `ngclient.Updater` and tough — fetch over HTTP from a Python
//! `http.server` on 127.0.0.1; every verdict is the client's own. Tests of `tufkey repo`
//! use the same helpers on repositories that tufkey writes.

#[path = "harness/mod.rs"]
mod harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use harness::clients::{
    both, ngclient, paths_with_status, tough, tough_folder, Client, HttpRepo, TrustedVersions,
};
use serde_json::Value;

// ---- a repository built with python-tuf ----------------------------------------------

/// A repository made by `build_repo.py` in a temporary folder: `repo/` is served, `keys/`
/// holds its private keys, `trusted_root.json` is root version 1.
struct PyRepo {
    state: tempfile::TempDir,
    /// path -> (length, sha256) of the targets the repository lists.
    targets: BTreeMap<String, (u64, String)>,
}

impl PyRepo {
    fn new() -> PyRepo {
        let state = tempfile::Builder::new()
            .prefix("tufkey-pyrepo-")
            .tempdir()
            .expect("temp dir");
        let dir = state.path().join("state");
        let out = build_repo(&["init", s(&dir)]);
        let targets = out["targets"]
            .as_object()
            .expect("targets listing")
            .iter()
            .map(|(path, t)| {
                let len = t["length"].as_u64().expect("length");
                let sha = t["sha256"].as_str().expect("sha256").to_string();
                (path.clone(), (len, sha))
            })
            .collect();
        PyRepo { state, targets }
    }

    fn dir(&self) -> PathBuf {
        self.state.path().join("state")
    }

    fn repo(&self) -> PathBuf {
        self.dir().join("repo")
    }

    fn trusted_root(&self) -> PathBuf {
        self.dir().join("trusted_root.json")
    }

    /// A cache folder for one installed client.
    fn cache(&self, name: &str) -> PathBuf {
        self.state.path().join("caches").join(name)
    }

    /// Both clients, each with its own cache folder, fetching from `http`.
    fn clients(&self, http: &HttpRepo) -> [Client; 2] {
        both(
            http,
            &self.trusted_root(),
            &self.state.path().join("caches"),
        )
    }

    fn target(&self, path: &str) -> (u64, String) {
        self.targets[path].clone()
    }

    /// The served file of a target (consistent snapshots: `targets/<sha256>.<name>`).
    fn target_file(&self, path: &str) -> PathBuf {
        let (_, sha) = self.target(path);
        let p = Path::new(path);
        let name = p.file_name().unwrap().to_str().unwrap();
        let folder = p.parent().unwrap_or(Path::new(""));
        self.repo()
            .join("targets")
            .join(folder)
            .join(format!("{sha}.{name}"))
    }

    fn rotate_root(&self) {
        build_repo(&["rotate-root", s(&self.dir())]);
    }

    /// A new timestamp (version + 1) expiring in `days` days.
    fn timestamp(&self, days: i64) {
        build_repo(&["timestamp", s(&self.dir()), &days.to_string()]);
    }

    /// A new top-level target; returns its (length, sha256).
    fn add_target(&self, path: &str, text: &str) -> (u64, String) {
        let out = build_repo(&["add-target", s(&self.dir()), path, text]);
        let t = &out["target"];
        (
            t["length"].as_u64().expect("length"),
            t["sha256"].as_str().expect("sha256").to_string(),
        )
    }

    fn metadata(&self, name: &str) -> PathBuf {
        self.repo().join("metadata").join(name)
    }
}

fn build_repo(args: &[&str]) -> Value {
    let script = harness::repo().join("hsm-tests/clients/build_repo.py");
    let mut argv = vec![s(&script)];
    argv.extend_from_slice(args);
    let out = std::process::Command::new(harness::python())
        .args(&argv)
        .output()
        .expect("run build_repo.py");
    assert!(
        out.status.success(),
        "build_repo.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("build_repo.py prints JSON")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn versions(root: u64, timestamp: u64, snapshot: u64, targets: u64) -> TrustedVersions {
    TrustedVersions {
        root,
        timestamp,
        snapshot,
        targets,
    }
}

// ---- a fresh repository ----------------------------------------------------------------

#[test]
fn both_clients_refresh_and_download_top_level_and_delegated_targets_of_a_python_tuf_repository() {
    let repo = PyRepo::new();
    let http = HttpRepo::serve(&repo.repo());
    for client in repo.clients(&http) {
        assert_eq!(
            client.refresh().trusted(),
            versions(1, 1, 1, 1),
            "{}",
            client.name()
        );
        // hello.txt from the top-level targets role, team-notes.txt through the delegation.
        for path in ["hello.txt", "team-notes.txt"] {
            let got = client.download(path);
            assert_eq!(
                got.delivered(),
                repo.target(path),
                "{} {path}",
                client.name()
            );
        }
    }
}

/// python-tuf (and the spec's HASH.FILENAME.EXT) puts the hash before the file's own name,
/// `team/<sha256>.app-1.0.tar`; tough 0.24 puts it before the whole path,
/// `<sha256>.team/app-1.0.tar`. A repository with consistent snapshots and targets in
/// folders serves tough only if it also publishes that second name.
#[test]
fn a_target_in_a_folder_is_fetched_by_ngclient_beside_its_name_but_by_tough_under_a_hash_of_its_whole_path(
) {
    let repo = PyRepo::new();
    let http = HttpRepo::serve(&repo.repo());
    let [ng, tg] = repo.clients(&http);
    let (_, sha) = repo.target("team/app-1.0.tar");

    let got = ng.download("team/app-1.0.tar");
    assert_eq!(got.delivered(), repo.target("team/app-1.0.tar"));
    let requests = http.take_requests();
    let python_tuf_name = format!("/targets/team/{sha}.app-1.0.tar");
    assert!(
        paths_with_status(&requests, 200).contains(&python_tuf_name.as_str()),
        "{requests:?}"
    );

    let got = tg.download("team/app-1.0.tar");
    let (error_type, message) = got.refusal();
    assert_eq!(error_type, "Transport", "{got:?}");
    let tough_name = format!("/targets/{sha}.team/app-1.0.tar");
    assert!(message.contains(&tough_name), "{message}");
    let requests = http.take_requests();
    assert!(
        paths_with_status(&requests, 404).contains(&tough_name.as_str()),
        "{requests:?}"
    );

    // Naming is the only difference: with the bytes also under tough's name, tough checks
    // them against the same metadata and delivers them.
    let tough_file = repo.repo().join(&tough_name[1..]);
    std::fs::create_dir_all(tough_file.parent().unwrap()).unwrap();
    std::fs::copy(repo.target_file("team/app-1.0.tar"), &tough_file).unwrap();
    let got = tg.download("team/app-1.0.tar");
    assert_eq!(got.delivered(), repo.target("team/app-1.0.tar"));
}

#[test]
fn both_clients_say_target_not_found_for_a_path_no_role_lists() {
    let repo = PyRepo::new();
    let http = HttpRepo::serve(&repo.repo());
    for client in repo.clients(&http) {
        // `team/*` is delegated, but the team role lists no such file.
        for path in ["missing.txt", "team/app-2.0.tar"] {
            let got = client.download(path);
            assert_eq!(
                got.refusal().0,
                "TargetNotFound",
                "{} {path}",
                client.name()
            );
            assert!(got.refusal().1.contains(path), "{got:?}");
        }
    }
}

#[test]
fn with_consistent_snapshots_both_clients_fetch_version_prefixed_metadata_and_hash_prefixed_targets(
) {
    let repo = PyRepo::new();
    let http = HttpRepo::serve(&repo.repo());
    let (_, notes_sha) = repo.target("team-notes.txt");
    for client in repo.clients(&http) {
        client.download("team-notes.txt").delivered();
        let requests = http.take_requests();
        let fetched = paths_with_status(&requests, 200);
        for expected in [
            "/metadata/timestamp.json".to_string(),
            "/metadata/1.snapshot.json".to_string(),
            "/metadata/1.targets.json".to_string(),
            "/metadata/1.team.json".to_string(),
            format!("/targets/{notes_sha}.team-notes.txt"),
        ] {
            assert!(
                fetched.contains(&expected.as_str()),
                "{} did not fetch {expected}: {requests:?}",
                client.name()
            );
        }
        for unversioned in ["/metadata/snapshot.json", "/metadata/targets.json"] {
            assert!(
                !requests.iter().any(|r| r.path == unversioned),
                "{} fetched {unversioned}: {requests:?}",
                client.name()
            );
        }
        // Each looks for the next root and is told there is none.
        assert!(
            paths_with_status(&requests, 404).contains(&"/metadata/2.root.json"),
            "{}: {requests:?}",
            client.name()
        );
    }
}

#[test]
fn after_a_new_target_is_published_both_clients_fetch_the_new_snapshot_by_version_and_download_it()
{
    let repo = PyRepo::new();
    let http = HttpRepo::serve(&repo.repo());
    for client in repo.clients(&http) {
        assert_eq!(client.refresh().trusted(), versions(1, 1, 1, 1));
    }
    let added = repo.add_target("release-2.txt", "the second release\n");
    http.take_requests();
    for client in repo.clients(&http) {
        let got = client.download("release-2.txt");
        assert_eq!(got.trusted(), versions(1, 2, 2, 2), "{}", client.name());
        assert_eq!(got.delivered(), added, "{}", client.name());
        let requests = http.take_requests();
        for expected in ["/metadata/2.snapshot.json", "/metadata/2.targets.json"] {
            assert!(
                paths_with_status(&requests, 200).contains(&expected),
                "{} did not fetch {expected}: {requests:?}",
                client.name()
            );
        }
        // The old targets still verify under the new targets version.
        assert_eq!(
            client.download("hello.txt").delivered(),
            repo.target("hello.txt")
        );
        http.take_requests();
    }
}

#[test]
fn tough_reads_the_same_repository_from_a_folder_through_its_filesystem_transport() {
    let repo = PyRepo::new();
    let client = tough_folder(&repo.repo(), &repo.trusted_root(), &repo.cache("tough-fs"));
    let got = client.download("team-notes.txt");
    assert_eq!(got.trusted(), versions(1, 1, 1, 1));
    assert_eq!(got.delivered(), repo.target("team-notes.txt"));
}

// ---- what the clients refuse -------------------------------------------------------------

#[test]
fn both_clients_refuse_a_tampered_target_file_and_hand_over_no_bytes() {
    let repo = PyRepo::new();
    let http = HttpRepo::serve(&repo.repo());
    let file = repo.target_file("hello.txt");
    let mut bytes = std::fs::read(&file).unwrap();
    bytes[0] ^= 0x20; // same length, other bytes: only the hash can tell
    std::fs::write(&file, &bytes).unwrap();

    let [ng, tg] = repo.clients(&http);
    let got = ng.download("hello.txt");
    assert_eq!(got.refusal().0, "LengthOrHashMismatchError", "{got:?}");
    assert!(
        !repo.cache("ngclient").join("targets/hello.txt").exists(),
        "ngclient kept the tampered file"
    );
    let got = tg.download("hello.txt");
    assert_eq!(got.refusal().0, "HashMismatch", "{got:?}");
    assert!(got.refusal().1.contains("hello.txt"), "{got:?}");

    // The metadata is intact: the other targets still download.
    for client in repo.clients(&http) {
        let got = client.download("team-notes.txt");
        assert_eq!(got.delivered(), repo.target("team-notes.txt"));
    }
}

#[test]
fn both_clients_refuse_an_expired_timestamp() {
    let repo = PyRepo::new();
    repo.timestamp(-1);
    let http = HttpRepo::serve(&repo.repo());
    let [ng, tg] = repo.clients(&http);
    let got = ng.refresh();
    assert_eq!(got.refusal().0, "ExpiredMetadataError", "{got:?}");
    assert!(got.refusal().1.contains("timestamp"), "{got:?}");
    let got = tg.refresh();
    assert_eq!(got.refusal().0, "ExpiredMetadata", "{got:?}");
    assert!(got.refusal().1.contains("timestamp"), "{got:?}");
}

#[test]
fn an_expired_timestamp_is_accepted_by_both_clients_at_a_time_before_it_expired() {
    let repo = PyRepo::new();
    repo.timestamp(-1);
    let http = HttpRepo::serve(&repo.repo());
    let expires = read_json(&repo.metadata("timestamp.json"))["signed"]["expires"]
        .as_str()
        .unwrap()
        .to_string();
    let before = (chrono::DateTime::parse_from_rfc3339(&expires).unwrap()
        - chrono::Duration::hours(2))
    .format("%Y-%m-%dT%H:%M:%SZ")
    .to_string();
    for client in repo.clients(&http) {
        let client = client.at(&before);
        // Several update cycles in a row: the faked clock runs on between them, so tough's
        // refusal of a clock that went back does not trip.
        for _ in 0..3 {
            assert_eq!(client.refresh().trusted(), versions(1, 2, 1, 1), "{before}");
        }
        let got = client.download("hello.txt");
        assert_eq!(got.delivered(), repo.target("hello.txt"));
    }
}

#[test]
fn a_client_that_trusted_a_newer_timestamp_refuses_the_older_one_served_again() {
    let repo = PyRepo::new();
    let http = HttpRepo::serve(&repo.repo());
    let ts = repo.metadata("timestamp.json");
    let old = std::fs::read(&ts).unwrap();
    repo.timestamp(1);
    for client in repo.clients(&http) {
        assert_eq!(client.refresh().trusted(), versions(1, 2, 1, 1));
    }
    std::fs::write(&ts, old).unwrap(); // an attacker or a stale mirror replays version 1
    let [ng, tg] = repo.clients(&http);
    let got = ng.refresh();
    assert_eq!(got.refusal().0, "BadVersionNumberError", "{got:?}");
    let got = tg.refresh();
    assert_eq!(got.refusal().0, "OlderMetadata", "{got:?}");
}

// ---- root rotation -------------------------------------------------------------------------

#[test]
fn both_clients_follow_a_root_rotation_from_their_cache_and_from_the_shipped_root() {
    let repo = PyRepo::new();
    let http = HttpRepo::serve(&repo.repo());
    for client in repo.clients(&http) {
        assert_eq!(client.refresh().trusted(), versions(1, 1, 1, 1));
    }
    // Root 2 replaces the root key and the timestamp key; timestamp 2 is signed by the new
    // timestamp key only, so a client that kept root 1 would refuse it.
    repo.rotate_root();
    http.take_requests();
    for client in repo.clients(&http) {
        let got = client.download("hello.txt");
        assert_eq!(got.trusted(), versions(2, 2, 1, 1), "{}", client.name());
        assert_eq!(got.delivered(), repo.target("hello.txt"));
        let requests = http.take_requests();
        assert!(
            paths_with_status(&requests, 200).contains(&"/metadata/2.root.json"),
            "{}: {requests:?}",
            client.name()
        );
        assert!(
            paths_with_status(&requests, 404).contains(&"/metadata/3.root.json"),
            "{}: {requests:?}",
            client.name()
        );
    }
    // A client installed now, with root 1 shipped in it and an empty cache, gets there too.
    let fresh = [
        ngclient(&http, &repo.trusted_root(), &repo.cache("ngclient-new")),
        tough(&http, &repo.trusted_root(), &repo.cache("tough-new")),
    ];
    for client in fresh {
        assert_eq!(client.refresh().trusted(), versions(2, 2, 1, 1));
    }
}

#[test]
fn a_client_that_cannot_fetch_the_new_root_refuses_the_timestamp_signed_by_the_new_key() {
    let repo = PyRepo::new();
    repo.rotate_root();
    std::fs::remove_file(repo.metadata("2.root.json")).unwrap();
    let http = HttpRepo::serve(&repo.repo());
    let [ng, tg] = repo.clients(&http);
    let got = ng.refresh();
    assert_eq!(got.refusal().0, "UnsignedMetadataError", "{got:?}");
    assert!(got.refusal().1.contains("timestamp"), "{got:?}");
    let got = tg.refresh();
    assert_eq!(got.refusal().0, "VerifyMetadata", "{got:?}");
    assert!(got.refusal().1.contains("timestamp"), "{got:?}");
}

// ---- real-world repositories ------------------------------------------------------------

fn realworld(name: &str) -> PathBuf {
    harness::repo()
        .join("../shared/interop/realworld")
        .join(name)
}

fn read_json(p: &Path) -> Value {
    let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn read_line(p: &Path) -> String {
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .trim()
        .to_string()
}

/// (length, sha256) of `path` as the repository's targets metadata `file` lists it.
fn listed(metadata: &Path, path: &str) -> (u64, String) {
    let doc = read_json(metadata);
    let t = &doc["signed"]["targets"][path];
    (
        t["length"]
            .as_u64()
            .unwrap_or_else(|| panic!("{path} not in {}", metadata.display())),
        t["hashes"]["sha256"].as_str().unwrap().to_string(),
    )
}

/// A real-world repository served as its README says (`python -m http.server <dir>`), and
/// one client of each kind starting from its `initial_root.json` at its `faketime`.
struct RealWorld {
    dir: PathBuf,
    http: HttpRepo,
    caches: tempfile::TempDir,
}

impl RealWorld {
    fn serve(name: &str) -> RealWorld {
        let dir = realworld(name);
        let http = HttpRepo::serve(&dir);
        RealWorld {
            dir,
            http,
            caches: tempfile::tempdir().unwrap(),
        }
    }

    fn at_capture_time(&self) -> [Client; 2] {
        let at = read_line(&self.dir.join("faketime"));
        self.today().map(|c| c.at(&at))
    }

    fn today(&self) -> [Client; 2] {
        both(
            &self.http,
            &self.dir.join("initial_root.json"),
            self.caches.path(),
        )
    }

    fn target_path(&self) -> String {
        read_line(&self.dir.join("targetpath"))
    }

    fn timestamp_version(&self) -> u64 {
        read_json(&self.dir.join("metadata/timestamp.json"))["signed"]["version"]
            .as_u64()
            .unwrap()
    }
}

#[test]
fn both_clients_download_sigstores_trusted_root_at_the_time_the_repository_was_captured() {
    let rw = RealWorld::serve("sigstore-root-signing");
    let target = rw.target_path();
    let want = listed(&rw.dir.join("metadata/11.targets.json"), &target);
    for client in rw.at_capture_time() {
        let got = client.download(&target);
        assert_eq!(
            got.trusted(),
            versions(12, rw.timestamp_version(), 159, 11),
            "{}",
            client.name()
        );
        assert_eq!(got.delivered(), want, "{}", client.name());
    }
}

#[test]
fn tuf_on_ci_delegated_artifact_downloads_with_ngclient_and_tough_stops_at_its_folder_naming() {
    let rw = RealWorld::serve("tuf-on-ci-0.11");
    let target = rw.target_path();
    assert_eq!(
        target, "delegatedrole/artifact",
        "the README's target moved"
    );
    let want = listed(&rw.dir.join("metadata/2.delegatedrole.json"), &target);
    let [ng, tg] = rw.at_capture_time();
    let expected = versions(1, rw.timestamp_version(), 2, 1);

    let got = ng.download(&target);
    assert_eq!(got.trusted(), expected);
    assert_eq!(got.delivered(), want);

    // tough verifies the whole chain of metadata, then asks for <sha256>.delegatedrole/artifact
    // where tuf-on-ci (like python-tuf) published delegatedrole/<sha256>.artifact.
    assert_eq!(tg.refresh().trusted(), expected);
    let got = tg.download(&target);
    assert_eq!(got.refusal().0, "Transport", "{got:?}");
    let tough_name = format!("/targets/{}.{target}", want.1);
    assert!(got.refusal().1.contains(&tough_name), "{got:?}");
}

#[test]
fn both_clients_refuse_sigstores_repository_today_because_its_root_expired() {
    let rw = RealWorld::serve("sigstore-root-signing");
    let [ng, tg] = rw.today();
    let got = ng.refresh();
    assert_eq!(got.refusal().0, "ExpiredMetadataError", "{got:?}");
    assert!(got.refusal().1.contains("root"), "{got:?}");
    let got = tg.refresh();
    assert_eq!(got.refusal().0, "ExpiredMetadata", "{got:?}");
    assert!(got.refusal().1.contains("root"), "{got:?}");
}

#[test]
fn the_tuf_on_ci_repository_is_valid_today_for_both_clients_as_its_readme_promises() {
    let rw = RealWorld::serve("tuf-on-ci-0.11");
    for client in rw.today() {
        let got = client.refresh();
        assert_eq!(got.trusted().root, 1, "{}", client.name());
        assert_eq!(got.trusted().snapshot, 2, "{}", client.name());
    }
}
