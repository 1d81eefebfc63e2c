//! The table of user tags: the names of the locations that store entries. Each name is kept
//! once, process-wide, and an index entry holds its 2-byte number instead of the string.

use std::sync::RwLock;

/// Only grows (location names across reloads, and tags read from disk). At 65,535 names new
/// ones share the last number: their entries then lose their tag on a rewrite and
/// `invalidate_on_unsafe: location` misses them, far beyond any real config.
static TAGS: RwLock<Vec<Box<str>>> = RwLock::new(Vec::new());

/// The number of `tag`, added if new.
pub fn tag_index(tag: &str) -> u16 {
    if let Some(i) = known_tag(tag) {
        return i;
    }
    let Ok(mut tags) = TAGS.write() else {
        return u16::MAX;
    };
    // another thread may have added it between the read and the write lock
    if let Some(i) = tags.iter().position(|t| &**t == tag) {
        return i as u16;
    }
    if tags.len() >= u16::MAX as usize {
        return u16::MAX;
    }
    tags.push(tag.into());
    (tags.len() - 1) as u16
}

/// The number of `tag` if any entry ever had it.
pub fn known_tag(tag: &str) -> Option<u16> {
    let tags = TAGS.read().ok()?;
    tags.iter().position(|t| &**t == tag).map(|i| i as u16)
}

/// The name numbered `i` (empty if unknown).
pub fn tag_name(i: u16) -> Box<str> {
    TAGS.read()
        .ok()
        .and_then(|t| t.get(i as usize).cloned())
        .unwrap_or_default()
}
