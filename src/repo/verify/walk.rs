//! The state of one check, shared by every step: where the repository is, what was
//! asked, and what was found so far.

use std::path::{Path, PathBuf};

use chrono::SecondsFormat;

use super::options::VerifyOptions;
use super::report::{Problem, Report, TargetsSummary};

/// The state of one check: where the repository is and what was found so far.
pub(super) struct Walk<'a> {
    pub dir: PathBuf,
    pub options: &'a VerifyOptions,
    pub report: Report,
}

impl<'a> Walk<'a> {
    pub fn new(dir: &Path, options: &'a VerifyOptions) -> Walk<'a> {
        Walk {
            dir: dir.to_path_buf(),
            options,
            report: Report {
                dir: dir.display().to_string(),
                checked_at: options.at.to_rfc3339_opts(SecondsFormat::Secs, true),
                trusted_root: String::new(),
                trusted_root_version: None,
                consistent_snapshot: false,
                roles: Vec::new(),
                targets: TargetsSummary {
                    checked_files: options.check_targets,
                    ..TargetsSummary::default()
                },
                problems: Vec::new(),
                notes: Vec::new(),
                search: Vec::new(),
            },
        }
    }

    pub fn problem(&mut self, file: &str, message: impl Into<String>) {
        self.report.problems.push(Problem {
            file: file.to_owned(),
            message: message.into(),
        });
    }

    pub fn note(&mut self, file: &str, message: impl Into<String>) {
        self.report.notes.push(Problem {
            file: file.to_owned(),
            message: message.into(),
        });
    }

    /// `metadata/NAME`, as a path and as the name problems carry.
    pub fn metadata_file(&self, name: &str) -> (PathBuf, String) {
        (
            self.dir.join("metadata").join(name),
            format!("metadata/{name}"),
        )
    }

    /// Marks each role line with whether its file had a problem.
    pub fn finish(&mut self) {
        for r in &mut self.report.roles {
            r.ok = !self.report.problems.iter().any(|p| p.file == r.file);
        }
    }
}
