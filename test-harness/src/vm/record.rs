//! `harness vm --record DIR`: every exchange with the guest, kept as
//! evidence in a form a scripted guest can replay.
//!
//! `DIR/transcript.jsonl` holds one JSON object a line, in order:
//! - `{"kind":"start","harness":..,"driver":..,"arch":..,"guest_dir":..,"kd":..,
//!   "symbols":..,"kd_script":..|null}` first: the options the commands depend
//!   on, with the driver (and its PDB) kept as `DIR/files/<name>`, so that the
//!   run replays as it ran;
//! - `{"kind":"run","command":..,"timeout_ms":..,"code":n|null,"stdout":..,"stderr":..,"elapsed_ms":..}`
//!   for each guest command (`code` null: no exit code, the connection
//!   dropped or the limit passed), or with `"error"` instead of the result
//!   when the command could not be sent at all;
//! - `{"kind":"upload","local":..,"remote":..}` and
//!   `{"kind":"download","remote":..,"file":..}`, the downloaded file kept
//!   as `DIR/<file>`; either with `"error"` if the copy failed;
//! - `{"kind":"end","verdict":{..}}` (the verdict's JSON) or
//!   `{"kind":"end","error":".."}` last.
//!
//! The same lines, written by hand or by the Windows workflow, are what
//! `tests/vm.rs` replays.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use harness_core::verdict::Verdict;

use super::{Remote, Transport, TransportError, VmError, VmOptions};

/// The transcript's file name inside the record folder.
pub const TRANSCRIPT: &str = "transcript.jsonl";

/// A [`Transport`] that passes everything to another and writes it down.
pub struct Recorder<'a> {
    inner: &'a mut dyn Transport,
    dir: PathBuf,
    file: File,
    downloads: usize,
    /// The first write that failed: the run goes on (the guest must still
    /// be restored), and [`Recorder::finish`] reports it.
    failed: Option<std::io::Error>,
}

impl<'a> Recorder<'a> {
    /// Starts a transcript of a run with `options` in `dir` (created if
    /// missing; an existing transcript there is refused rather than
    /// overwritten), and keeps a copy of the driver and its PDB there.
    ///
    /// # Errors
    /// The folder, the file or the copies cannot be made.
    pub fn new(
        inner: &'a mut dyn Transport,
        dir: &Path,
        options: &VmOptions,
    ) -> Result<Self, TransportError> {
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| TransportError::Io { what, path, source }
        };
        std::fs::create_dir_all(dir).map_err(io("create the record folder", dir))?;
        let path = dir.join(TRANSCRIPT);
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io("create (it must not exist yet)", &path))?;
        let files = dir.join("files");
        std::fs::create_dir_all(&files).map_err(io("create", &files))?;
        let pdb = options.driver.with_extension("pdb");
        for (local, required) in [(&options.driver, true), (&pdb, false)] {
            if let Some(name) = local.file_name()
                && (required || local.is_file())
            {
                std::fs::copy(local, files.join(name)).map_err(io("keep a copy of", local))?;
            }
        }
        let name = |path: &Path| {
            path.file_name()
                .map(|name| name.to_string_lossy().into_owned())
        };
        let mut recorder = Self {
            inner,
            dir: dir.to_path_buf(),
            file,
            downloads: 0,
            failed: None,
        };
        recorder.write(&json!({
            "kind": "start",
            "harness": env!("CARGO_PKG_VERSION"),
            "driver": name(&options.driver),
            "arch": options.arch.to_string(),
            "guest_dir": options.guest_dir,
            "kd": options.kd,
            "symbols": options.symbols,
            "kd_script": options.kd_script.as_deref().and_then(name),
            "verifier_flags": options.verifier_flags,
        }));
        Ok(recorder)
    }

    fn write(&mut self, line: &Value) {
        if self.failed.is_none()
            && let Err(error) = writeln!(self.file, "{line}")
        {
            self.failed = Some(error);
        }
    }

    /// Ends the transcript with the run's outcome
    /// (`{"kind":"end","verdict":{..}}` or `{"kind":"end","error":".."}`)
    /// and returns its path.
    ///
    /// # Errors
    /// A line could not be written: the transcript is incomplete.
    pub fn finish(mut self, outcome: &Result<Verdict, VmError>) -> Result<PathBuf, TransportError> {
        let end = match outcome {
            // `json!` would unwrap a failed conversion; this does not.
            Ok(verdict) => serde_json::to_value(verdict).map_or_else(
                |error| json!({ "kind": "end", "error": format!("the verdict as JSON: {error}") }),
                |verdict| json!({ "kind": "end", "verdict": verdict }),
            ),
            Err(error) => json!({ "kind": "end", "error": error.to_string() }),
        };
        self.write(&end);
        let path = self.dir.join(TRANSCRIPT);
        let flushed = self.file.flush();
        match self.failed.take().map_or(flushed, Err) {
            Ok(()) => Ok(path),
            Err(source) => Err(TransportError::Io {
                what: "write the transcript (it is incomplete)",
                path,
                source,
            }),
        }
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Transport for Recorder<'_> {
    fn run(&mut self, command: &str, timeout: Duration) -> Result<Remote, TransportError> {
        let started = Instant::now();
        let result = self.inner.run(command, timeout);
        let mut line = json!({
            "kind": "run",
            "command": command,
            "timeout_ms": millis(timeout),
            "elapsed_ms": millis(started.elapsed()),
        });
        match &result {
            Ok(remote) => {
                line["code"] = json!(remote.code);
                line["stdout"] = json!(remote.stdout);
                line["stderr"] = json!(remote.stderr);
            }
            Err(error) => line["error"] = json!(error.to_string()),
        }
        self.write(&line);
        result
    }

    fn upload(&mut self, local: &Path, remote: &str) -> Result<(), TransportError> {
        let result = self.inner.upload(local, remote);
        let mut line = json!({
            "kind": "upload",
            "local": local.display().to_string(),
            "remote": remote,
        });
        if let Err(error) = &result {
            line["error"] = json!(error.to_string());
        }
        self.write(&line);
        result
    }

    fn download(&mut self, remote: &str, local: &Path) -> Result<(), TransportError> {
        let result = self.inner.download(remote, local);
        let mut line = json!({ "kind": "download", "remote": remote });
        match &result {
            Ok(()) => {
                self.downloads += 1;
                let name = format!("download-{}.txt", self.downloads);
                if let Err(error) = std::fs::copy(local, self.dir.join(&name)) {
                    self.failed.get_or_insert(error);
                }
                line["file"] = json!(name);
            }
            Err(error) => line["error"] = json!(error.to_string()),
        }
        self.write(&line);
        result
    }

    fn pause(&mut self, pause: Duration) {
        self.inner.pause(pause);
    }
}
