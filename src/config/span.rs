//! Maps a config path such as `locations[2].proxy_pass` to the line and column of that node in the
//! YAML source, so semantic errors found after deserialisation still point at the right line.

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Line and column (both 1-based) of every node and mapping key of a YAML document.
#[derive(Debug, Default)]
pub struct SpanIndex {
    nodes: HashMap<String, (usize, usize)>,
}

enum Frame {
    Map {
        path: String,
        key: Option<String>,
        first: bool,
    },
    Seq {
        path: String,
        index: usize,
    },
}

struct Collector {
    stack: Vec<Frame>,
    nodes: HashMap<String, (usize, usize)>,
}

fn join_key(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_string()
    } else {
        format!("{parent}.{key}")
    }
}

impl Collector {
    /// The path of the node that starts now, advancing the parent's cursor. `None` when the event
    /// is a mapping key rather than a value.
    fn next_path(&mut self, scalar: Option<&str>, mark: Marker) -> Option<String> {
        let pos = (mark.line(), mark.col() + 1);
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, index }) => {
                let p = format!("{path}[{index}]");
                *index += 1;
                Some(p)
            }
            Some(Frame::Map { path, key, first }) => match key.take() {
                Some(k) => Some(join_key(path, &k)),
                None => {
                    let k = scalar.unwrap_or("?").to_string();
                    // A block mapping's start mark is unreliable; its first key is where it starts.
                    if *first {
                        *first = false;
                        self.nodes.insert(path.clone(), pos);
                    }
                    // Record the key position too: errors about a key itself point here.
                    self.nodes
                        .entry(format!("{}#key", join_key(path, &k)))
                        .or_insert(pos);
                    *key = Some(k);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Collector {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = (mark.line(), mark.col() + 1);
        match ev {
            Event::Scalar(ref s, ..) => {
                if let Some(p) = self.next_path(Some(s), mark) {
                    self.nodes.entry(p).or_insert(pos);
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.next_path(None, mark) {
                    self.nodes.entry(p).or_insert(pos);
                }
            }
            Event::MappingStart(..) => {
                let p = self.next_path(None, mark).unwrap_or_default();
                self.nodes.entry(p.clone()).or_insert(pos);
                self.stack.push(Frame::Map {
                    path: p,
                    key: None,
                    first: true,
                });
            }
            Event::SequenceStart(..) => {
                let p = self.next_path(None, mark).unwrap_or_default();
                self.nodes.entry(p.clone()).or_insert(pos);
                self.stack.push(Frame::Seq { path: p, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

impl SpanIndex {
    /// Index `src`. A document the parser rejects yields an empty index (serde_yaml reports
    /// syntax errors with their own position).
    pub fn new(src: &str) -> SpanIndex {
        let mut c = Collector {
            stack: Vec::new(),
            nodes: HashMap::new(),
        };
        let mut parser = Parser::new_from_str(src);
        if parser.load(&mut c, false).is_err() {
            return SpanIndex::default();
        }
        SpanIndex { nodes: c.nodes }
    }

    /// Position of `path`, or of its nearest ancestor that exists (a missing key is reported at
    /// its parent mapping).
    pub fn locate(&self, path: &str) -> (usize, usize) {
        let mut p = path.to_string();
        loop {
            if let Some(pos) = self.nodes.get(&p) {
                return *pos;
            }
            if let Some(pos) = self.nodes.get(&format!("{p}#key")) {
                return *pos;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p.truncate(i),
                None => return self.nodes.get("").copied().unwrap_or((1, 1)),
            }
        }
    }

    /// Position of a mapping key itself (for "unknown"/"conflicting key" errors).
    pub fn locate_key(&self, path: &str) -> (usize, usize) {
        self.nodes
            .get(&format!("{path}#key"))
            .copied()
            .unwrap_or_else(|| self.locate(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_lines() {
        let src = "a: 1\nlocations:\n  - prefix: /\n    root: x\n  - exact: /y\n    proxy_pass: http://u/\nm: {k: v}\n";
        let idx = SpanIndex::new(src);
        assert_eq!(idx.locate("a"), (1, 4));
        assert_eq!(idx.locate("locations[1].proxy_pass"), (6, 17));
        assert_eq!(idx.locate_key("locations[1].proxy_pass"), (6, 5));
        assert_eq!(idx.locate("locations[0]"), (3, 5));
        assert_eq!(idx.locate("m.k"), (7, 8));
        assert_eq!(idx.locate("locations[1].missing"), (5, 5));
    }
}
