//! ListObjectsV2 on the embedded server, a page at a time. The bucket's folders are
//! walked in key order, and only as far as the page needs: a folder whose keys all
//! sort at or before the continuation token, or outside the prefix, is not opened, and
//! only the objects on the page are looked at (size and time). So a page costs about
//! the folders on the path to it, not the whole bucket, and listing a bucket of `n`
//! objects costs O(n) rather than O(n²).

use std::io;
use std::path::Path;
use std::time::SystemTime;

/// One object on a page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Entry {
    pub key: String,
    pub size: u64,
    pub modified: SystemTime,
}

/// One page of a listing, in key order.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Page {
    pub objects: Vec<Entry>,
    /// With the delimiter `/`: the folders directly under the prefix that hold some
    /// object, each ending in `/`.
    pub prefixes: Vec<String>,
    /// More keys or prefixes follow the page; the next page starts after `last`.
    pub last: Option<String>,
}

/// What a listing asks for.
#[derive(Debug, Clone, Copy)]
pub(super) struct Query<'a> {
    pub prefix: &'a str,
    /// Roll keys up at the first `/` after the prefix.
    pub folders: bool,
    /// Only keys (and prefixes) after this one.
    pub after: Option<&'a str>,
    pub max: usize,
}

/// Lists `bucket_root` (a bucket's folder) as `query` asks. Blocking: run it off the
/// runtime.
pub(super) fn list(bucket_root: &Path, query: Query<'_>) -> io::Result<Page> {
    let mut walk = Walk {
        query,
        page: Page::default(),
        taken: 0,
    };
    if query.max > 0 {
        walk.folder(bucket_root, "")?;
    }
    Ok(walk.page)
}

struct Walk<'a> {
    query: Query<'a>,
    page: Page,
    taken: usize,
}

/// A folder's entry, named as it sorts among keys: a folder's name with its `/`.
struct Named {
    name: String,
    folder: bool,
}

impl Walk<'_> {
    /// Walks the folder `dir`, whose keys start with `base`; false once the page is
    /// full.
    fn folder(&mut self, dir: &Path, base: &str) -> io::Result<bool> {
        for named in sorted(dir)? {
            let key = format!("{base}{}", named.name);
            let path = dir.join(named.name.trim_end_matches('/'));
            let more = if named.folder {
                self.subfolder(&path, &key)?
            } else {
                self.object(&path, key)?
            };
            if !more {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The folder at `path`, whose keys all start with `key` (ending in `/`).
    fn subfolder(&mut self, path: &Path, key: &str) -> io::Result<bool> {
        let Query { prefix, after, .. } = self.query;
        if !key.starts_with(prefix) && !prefix.starts_with(key) {
            return Ok(true);
        }
        if let Some(after) = after
            && key <= after
            && !after.starts_with(key)
        {
            return Ok(true);
        }
        let rolled_up = self.query.folders && key.starts_with(prefix) && key.len() > prefix.len();
        if !rolled_up {
            return self.folder(path, key);
        }
        if after.is_some_and(|after| key <= after) || !holds_an_object(path)? {
            return Ok(true);
        }
        Ok(self.take(key.to_owned(), |page, key| page.prefixes.push(key)))
    }

    /// The object at `path`, under `key`.
    fn object(&mut self, path: &Path, key: String) -> io::Result<bool> {
        if !key.starts_with(self.query.prefix)
            || self.query.after.is_some_and(|a| key.as_str() <= a)
        {
            return Ok(true);
        }
        let metadata = match std::fs::metadata(path) {
            Ok(m) => m,
            // Deleted since its folder was read.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
            Err(e) => return Err(e),
        };
        let entry = Entry {
            key,
            size: metadata.len(),
            modified: metadata.modified()?,
        };
        Ok(self.take(entry, |page, entry| page.objects.push(entry)))
    }

    /// Puts one item on the page, unless it is full; false once it is.
    fn take<T>(&mut self, item: T, put: impl FnOnce(&mut Page, T)) -> bool {
        if self.taken == self.query.max {
            // One more item exists: the page is truncated after the last one taken.
            self.page.last = self.last_key();
            return false;
        }
        self.taken += 1;
        put(&mut self.page, item);
        true
    }

    fn last_key(&self) -> Option<String> {
        let object = self.page.objects.last().map(|e| e.key.as_str());
        let prefix = self.page.prefixes.last().map(String::as_str);
        object.max(prefix).map(str::to_owned)
    }
}

/// `dir`'s entries in the order their keys sort. Names that are not UTF-8 hold no
/// key and are left out.
fn sorted(dir: &Path) -> io::Result<Vec<Named>> {
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let folder = entry.file_type()?.is_dir();
        let name = if folder { format!("{name}/") } else { name };
        entries.push(Named { name, folder });
    }
    entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Whether some file lies under the folder `dir`: an empty folder is no prefix.
fn holds_an_object(dir: &Path) -> io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_str().is_none() {
            continue;
        }
        if !entry.file_type()?.is_dir() || holds_an_object(&entry.path())? {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bucket(keys: &[&str]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        for key in keys {
            let path = dir.path().join(key);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("folders");
            std::fs::write(&path, key.as_bytes()).expect("file");
        }
        dir
    }

    fn keys(root: &Path, prefix: &str, folders: bool, max: usize) -> Vec<Vec<String>> {
        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let query = Query {
                prefix,
                folders,
                after: after.as_deref(),
                max,
            };
            let page = list(root, query).expect("list");
            let mut items: Vec<String> = page.objects.iter().map(|e| e.key.clone()).collect();
            items.extend(page.prefixes.iter().cloned());
            items.sort();
            pages.push(items);
            match page.last {
                Some(last) => after = Some(last),
                None => return pages,
            }
        }
    }

    const KEYS: &[&str] = &["a-c", "a/b", "a/c/d", "a0", "b/x", "b/y", "c"];

    #[test]
    fn a_flat_listing_is_in_key_order_across_folders_and_pages() {
        let root = bucket(KEYS);
        let all: Vec<String> = KEYS.iter().map(|k| (*k).to_owned()).collect();
        for max in 1..=8 {
            let pages = keys(root.path(), "", false, max);
            assert_eq!(pages.concat(), all, "max {max}");
            assert!(pages.iter().all(|p| p.len() <= max));
            assert!(pages[..pages.len() - 1].iter().all(|p| p.len() == max));
        }
    }

    #[test]
    fn a_prefix_limits_the_listing_and_a_slash_rolls_up_folders() {
        let root = bucket(KEYS);
        assert_eq!(
            keys(root.path(), "a/", false, 1000).concat(),
            ["a/b", "a/c/d"]
        );
        assert_eq!(
            keys(root.path(), "a", false, 2).concat(),
            ["a-c", "a/b", "a/c/d", "a0"]
        );
        assert_eq!(
            keys(root.path(), "", true, 1000).concat(),
            ["a-c", "a/", "a0", "b/", "c"]
        );
        assert_eq!(
            keys(root.path(), "", true, 2).concat(),
            ["a-c", "a/", "a0", "b/", "c"]
        );
        assert_eq!(
            keys(root.path(), "a/", true, 1000).concat(),
            ["a/b", "a/c/"]
        );
        assert_eq!(keys(root.path(), "b", true, 1000).concat(), ["b/"]);
        assert!(keys(root.path(), "z", true, 1000).concat().is_empty());
    }

    #[test]
    fn an_empty_folder_is_no_prefix_and_sizes_are_the_files() {
        let root = bucket(&["k/one"]);
        std::fs::create_dir_all(root.path().join("empty/inner")).expect("folders");
        assert_eq!(keys(root.path(), "", true, 1000).concat(), ["k/"]);
        let page = list(
            root.path(),
            Query {
                prefix: "",
                folders: false,
                after: None,
                max: 10,
            },
        )
        .expect("list");
        assert_eq!(page.objects.len(), 1);
        assert_eq!(page.objects[0].size, 5);
        assert_eq!(page.last, None);
    }
}
