//! Writing output files all-or-nothing, under file names derived from value names.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::CliError;

/// One file to write: its name inside the output directory and its contents.
#[derive(Debug)]
pub struct OutputFile {
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// A file name `<name>.npy` for each output name, safe inside one directory and
/// distinct from each other.
///
/// Path separators and control characters become '_', so no name escapes the
/// directory; a name made only of dots (`.`, `..`) has them replaced by '_'; an
/// empty name becomes `_`. If two outputs map to the same file, later ones get
/// `_2`, `_3`, ... appended.
pub fn file_names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut used = HashSet::new();
    names
        .into_iter()
        .map(|name| {
            let mut stem: String = name
                .chars()
                .map(|c| {
                    if c == '/' || c == '\\' || c.is_control() {
                        '_'
                    } else {
                        c
                    }
                })
                .collect();
            if stem.chars().all(|c| c == '.') {
                stem = stem.replace('.', "_");
                if stem.is_empty() {
                    stem.push('_');
                }
            }
            let mut file = format!("{stem}.npy");
            let mut k = 2;
            while !used.insert(file.clone()) {
                file = format!("{stem}_{k}.npy");
                k += 1;
            }
            file
        })
        .collect()
}

/// Writes every file into `dir` (created if missing), or none of them.
///
/// Each file goes to a temporary name first; only when all are written and synced
/// are they renamed into place. On any failure, the temporaries and the files
/// already renamed are removed (and `dir`, if this call created it and it is empty).
pub fn write_all_or_nothing(dir: &Path, files: &[OutputFile]) -> Result<(), CliError> {
    let created_dir = !dir.exists();
    fs::create_dir_all(dir).map_err(|source| CliError::Output {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut temps: Vec<PathBuf> = Vec::new();
    let mut finals: Vec<PathBuf> = Vec::new();
    let result = (|| {
        for (i, f) in files.iter().enumerate() {
            let tmp = dir.join(format!(".snipjit-{}-{i}.npy.tmp", std::process::id()));
            let err = |source| CliError::Output {
                path: dir.join(&f.file_name),
                source,
            };
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(err)?;
            temps.push(tmp);
            file.write_all(&f.bytes).map_err(err)?;
            file.sync_all().map_err(err)?;
        }
        for (tmp, f) in temps.iter().zip(files) {
            let dest = dir.join(&f.file_name);
            fs::rename(tmp, &dest).map_err(|source| CliError::Output {
                path: dest.clone(),
                source,
            })?;
            finals.push(dest);
        }
        Ok(())
    })();
    if result.is_err() {
        // Best effort: the error being reported matters more than a cleanup failure.
        for p in temps.iter().chain(&finals) {
            let _ = fs::remove_file(p);
        }
        if created_dir {
            let _ = fs::remove_dir(dir);
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_stay_inside_the_directory() {
        let names = file_names([
            "y",
            "a/b",
            "../../etc/passwd",
            "..",
            ".",
            "",
            "a_b",
            "y",
            "x\\y",
            "tab\there",
            ".hidden",
        ]);
        assert_eq!(
            names,
            [
                "y.npy",
                "a_b.npy",
                ".._.._etc_passwd.npy",
                "__.npy",
                "_.npy",
                "__2.npy",
                "a_b_2.npy",
                "y_2.npy",
                "x_y.npy",
                "tab_here.npy",
                ".hidden.npy",
            ]
        );
        for n in &names {
            assert!(!n.contains('/') && !n.contains('\\'));
            assert!(Path::new(n).file_name().is_some_and(|f| f == n.as_str()));
        }
    }
}
