//! Vocabulary files and the remapping between two of them (TensorFlow's
//! `GenerateVocabRemapping` over `InitializeTableFromTextFile`).
//!
//! Reading follows TensorFlow byte for byte: lines are split on `\n` only, one trailing `\r`
//! is removed, a final `\n` does not start another line, nothing else is trimmed, and an empty
//! line inside the part that is read is an error. The new vocabulary is read whole (as
//! TensorFlow does); the old one only up to `old_vocab_size` lines.
//!
//! Both vocabularies' tokens are grouped into shards by hash, each shard's tokens copied side
//! by side to exact places counted beforehand. Then, shard by shard and in parallel, the old
//! tokens are indexed in a hash table and the new ones looked up in it: a shard's work touches
//! only its own memory, small enough to stay in the cache, so a vocabulary of millions of
//! tokens remaps in a fraction of a second. Tokens are compared byte for byte; the hash only
//! finds candidates.

use std::ops::Range;
use std::path::{Path, PathBuf};

use std::sync::atomic::{AtomicU32, Ordering::Relaxed};

use hashbrown::HashTable;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::mmap::MappedFile;

/// The index vector entry for "no old row or column": initialise it.
pub const MISSING: u32 = u32::MAX;

/// The tokens of one vocabulary file (the part that was read). The file is memory-mapped.
pub struct Vocab {
    path: PathBuf,
    text: MappedFile,
    /// Where each line read starts, plus one past the end of the last one's `\n` (so line
    /// `i` is `starts[i]..starts[i + 1] - 1`, less one trailing `\r`). 32 bits each, so
    /// vocabulary files are limited to 4 GiB.
    starts: Vec<u32>,
}

impl Vocab {
    /// Reads the first `limit` lines of `path` (all lines for `None`) with TensorFlow's rules.
    /// Refuses a missing or empty file, an empty line among those read, and a file with fewer
    /// lines than `limit`.
    pub fn read(path: &Path, limit: Option<usize>) -> Result<Vocab> {
        if limit == Some(0) {
            return Err(Error::vocab(
                path,
                None,
                "a vocabulary size of 0 lines is not allowed",
            ));
        }
        let text = MappedFile::open(path)?;
        if text.len() >= u32::MAX as usize {
            return Err(Error::vocab(
                path,
                None,
                "vocabulary files of 4 GiB or more are not supported",
            ));
        }
        let starts = match limit {
            None => line_starts(&text),
            Some(n) => line_starts_upto(&text, n),
        };
        let line =
            |k: usize| &text[starts[k] as usize..(starts[k + 1] as usize - 1).min(text.len())];
        if let Some(k) = (0..starts.len() - 1).find(|&k| matches!(line(k), [] | [b'\r'])) {
            return Err(Error::vocab(path, Some(k + 1), "empty line"));
        }
        let vocab = Vocab {
            path: path.to_path_buf(),
            text,
            starts,
        };
        if vocab.is_empty() {
            return Err(Error::vocab(path, None, "the vocabulary file is empty"));
        }
        if let Some(n) = limit {
            if vocab.len() < n {
                return Err(Error::vocab(
                    path,
                    None,
                    format!(
                        "vocabulary size {n} was asked for, but the file has only {} lines",
                        vocab.len()
                    ),
                ));
            }
        }
        Ok(vocab)
    }

    /// Number of tokens read.
    pub fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// Whether no token was read (never true for a successfully read file).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Token `i` (0-based line).
    #[inline]
    pub fn token(&self, i: usize) -> &[u8] {
        let start = self.starts[i] as usize;
        let end = (self.starts[i + 1] as usize - 1).min(self.text.len());
        strip_cr(&self.text[start..end])
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Where each line of `text` starts, plus one past the end of the last line's `\n` (see
/// [`Vocab::starts`]). The newlines are counted, then recorded, in parallel pieces, a word at
/// a time, straight into the one vector.
fn line_starts(text: &[u8]) -> Vec<u32> {
    const PIECE: usize = 1 << 20;
    let counts: Vec<usize> = text
        .par_chunks(PIECE)
        .map(|piece| {
            let mut n = 0;
            newlines(piece, |_| n += 1);
            n
        })
        .collect();
    let total: usize = counts.iter().sum();
    let mut starts = vec![0u32; total + 2];
    let mut rest = &mut starts[1..=total];
    let mut outs = Vec::with_capacity(counts.len());
    for &n in &counts {
        let (out, more) = rest.split_at_mut(n);
        outs.push(out);
        rest = more;
    }
    text.par_chunks(PIECE)
        .zip(outs)
        .enumerate()
        .for_each(|(p, (piece, out))| {
            let mut k = 0;
            newlines(piece, |i| {
                out[k] = (p * PIECE + i + 1) as u32;
                k += 1;
            });
        });
    if at_end(text, starts[total] as usize) {
        starts.truncate(total + 1);
    } else {
        // A last line without a newline still counts.
        starts[total + 1] = text.len() as u32 + 1;
    }
    starts
}

/// Calls `found(i)` for every `\n` at `bytes[i]`, in order, testing eight bytes at a time.
#[inline]
fn newlines(bytes: &[u8], mut found: impl FnMut(usize)) {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    const NEWLINES: u64 = 0x0A0A_0A0A_0A0A_0A0A;
    let words = bytes.chunks_exact(8);
    let tail = words.remainder();
    for (w, word) in words.enumerate() {
        let x = u64::from_le_bytes(word.try_into().expect("8 bytes")) ^ NEWLINES;
        // The top bit of each byte that is zero in x, exactly (no carry crosses a byte).
        let mut zeros = !(((x & LOW7) + LOW7) | x | LOW7);
        while zeros != 0 {
            found(w * 8 + zeros.trailing_zeros() as usize / 8);
            zeros &= zeros - 1;
        }
    }
    let at = bytes.len() - tail.len();
    for (i, _) in tail.iter().enumerate().filter(|(_, &b)| b == b'\n') {
        found(at + i);
    }
}

/// [`line_starts`] for the first `limit` lines only, scanning no further.
fn line_starts_upto(text: &[u8], limit: usize) -> Vec<u32> {
    let mut starts = vec![0u32];
    let mut start = 0usize;
    while !at_end(text, start) && starts.len() <= limit {
        let end = memchr(b'\n', &text[start..]).map_or(text.len(), |i| start + i);
        start = end + 1;
        starts.push(start as u32);
    }
    starts
}

/// Whether a line starting at `start` is past the end of `text`: nothing left, or only a
/// `\r`, which TensorFlow's line reader strips from a last line without a newline and then
/// reads as the end of the file (not as an empty line).
fn at_end(text: &[u8], start: usize) -> bool {
    matches!(text.get(start..), None | Some([] | [b'\r']))
}

/// A line without its one trailing `\r`.
#[inline]
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// The first `needle` in `hay`, a word at a time.
fn memchr(needle: u8, hay: &[u8]) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pattern = LO * needle as u64;
    let mut i = 0;
    while i + 8 <= hay.len() {
        let word = u64::from_le_bytes(hay[i..i + 8].try_into().unwrap()) ^ pattern;
        if (word.wrapping_sub(LO) & !word & HI) != 0 {
            break;
        }
        i += 8;
    }
    hay[i..].iter().position(|&b| b == needle).map(|p| i + p)
}

/// For each of the first `new_size` tokens of `new`, its line in `old`, or [`MISSING`].
/// Refuses a duplicate token inside `old` or inside the first `new_size` tokens of `new`,
/// naming the token and both lines.
pub fn remap(new: &Vocab, new_size: usize, old: &Vocab) -> Result<Vec<u32>> {
    remap_with(new, new_size, old, hash_token)
}

fn remap_with(new: &Vocab, new_size: usize, old: &Vocab, hash: Hash) -> Result<Vec<u32>> {
    let map = lookup_with(new, 0..new_size, old, BLOCK, hash)?;
    // A token of the new window seen twice either maps to the same old line twice, or is
    // missing from the old vocabulary both times; only the missing ones need an index. The
    // old lines in use are kept as bits (a cache-sized table where a line number each would
    // take 4 bytes a token); the first user of a line used twice is searched for only then.
    let mut used = vec![0u64; old.len().div_ceil(64)];
    let mut dup: Option<Duplicate> = None;
    let mut missing = Vec::new();
    for (i, &m) in map.iter().enumerate() {
        if m == MISSING {
            missing.push(i as u32);
            continue;
        }
        let (word, bit) = (m as usize / 64, 1u64 << (m % 64));
        if used[word] & bit == 0 {
            used[word] |= bit;
        } else if dup.is_none() {
            let first = map.iter().position(|&f| f == m).expect("an earlier user");
            dup = Some((first, i));
        }
    }
    if let Some(d) = first_duplicate(&Grouped::new(new, Lines::List(&missing), hash), hash) {
        dup = Some(dup.map_or(d, |e| if d.1 < e.1 { d } else { e }));
    }
    match dup {
        Some((a, b)) => Err(duplicate(new, a, b)),
        None => Ok(map),
    }
}

/// For each token of `new` in `window`, its line in `old`, or [`MISSING`]; refuses a
/// duplicate token inside `old` (TensorFlow's `GenerateVocabRemapping`, which does not
/// check the new vocabulary for duplicates).
pub fn lookup(new: &Vocab, window: Range<usize>, old: &Vocab) -> Result<Vec<u32>> {
    lookup_with(new, window, old, BLOCK, hash_token)
}

/// New tokens are grouped this many lines at a time, so that the grouping of a large new
/// vocabulary is never made whole.
const BLOCK: usize = 1 << 22;

/// [`lookup`], grouping the new tokens `block` lines at a time, with the hash function
/// `hash`.
fn lookup_with(
    new: &Vocab,
    window: Range<usize>,
    old: &Vocab,
    block: usize,
    hash: Hash,
) -> Result<Vec<u32>> {
    check_window(new, window.start, window.len())?;
    if old.len() >= MISSING as usize {
        return Err(Error::vocab(
            &old.path,
            None,
            "more than 2^32 - 2 tokens are not supported",
        ));
    }
    let olds = Grouped::new(old, Lines::Range(0..old.len() as u32), hash);
    // Shard by shard: index the old tokens (each thread reusing one table, small enough to
    // stay in the cache), then look up the new ones that share the shard.
    let map: Vec<AtomicU32> = window.clone().map(|_| AtomicU32::new(MISSING)).collect();
    // (At least one block, even empty, so that the old vocabulary is always checked.)
    let blocks = (window.start..window.end.max(window.start + 1)).step_by(block);
    for start in blocks {
        let news = Grouped::new(
            new,
            Lines::Range(start as u32..(start + block).min(window.end) as u32),
            hash,
        );
        let dup = (0..SHARDS)
            .into_par_iter()
            .map_init(HashTable::new, |table, s| {
                let dup = index_shard(table, &olds, s, hash);
                for k in news.shard(s) {
                    let token = news.token(k);
                    if let Some(&m) = table.find(hash(token), |&m| olds.token(m as usize) == token)
                    {
                        let i = news.lines[k] as usize - window.start;
                        map[i].store(olds.lines[m as usize], Relaxed);
                    }
                }
                dup
            })
            .flatten()
            .min_by_key(|d| d.1);
        if let Some((a, b)) = dup {
            return Err(duplicate(old, a, b));
        }
    }
    Ok(map.into_iter().map(AtomicU32::into_inner).collect())
}

fn check_window(new: &Vocab, offset: usize, size: usize) -> Result<()> {
    if offset.saturating_add(size) > new.len() {
        return Err(Error::vocab(
            &new.path,
            None,
            format!(
                "new vocabulary lines {}..{} were asked for, but the file has only {} lines",
                offset + 1,
                offset.saturating_add(size),
                new.len()
            ),
        ));
    }
    Ok(())
}

/// A token for messages: decoded lossily, and its first 100 characters only where it is
/// longer (a token is a line, which may be a whole file's worth of bytes).
pub(crate) fn display_token(token: &[u8]) -> String {
    const SHOWN: usize = 100;
    let text = String::from_utf8_lossy(token);
    match text.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}... ({} bytes)", &text[..cut], token.len()),
        None => text.into_owned(),
    }
}

fn duplicate(vocab: &Vocab, first: usize, second: usize) -> Error {
    Error::DuplicateToken {
        file: vocab.path.clone(),
        token: display_token(vocab.token(first)),
        first: first + 1,
        second: second + 1,
    }
}

/// Tokens are grouped by hash into 2^SHARD_BITS shards, each small enough for its hash
/// table to stay in the cache while it is built and searched.
const SHARD_BITS: u32 = 8;
const SHARDS: usize = 1 << SHARD_BITS;

/// The shard of a hash: middle bits, since the tables use the low bits for buckets and the
/// high bits for their control bytes.
fn shard_of(hash: u64) -> usize {
    ((hash >> 40) as usize) & (SHARDS - 1)
}

/// A token's hash. A function pointer, so that the tests can make hashes collide.
type Hash = fn(&[u8]) -> u64;

fn hash_token(bytes: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    // foldhash (hashbrown's own hasher) with a fixed seed: well mixed in every bit, which
    // the sharding, the buckets and the control bytes all rely on.
    foldhash::fast::FixedState::with_seed(0x5eed).hash_one(bytes)
}

/// Some lines of a vocabulary, ascending.
enum Lines<'a> {
    Range(Range<u32>),
    List(&'a [u32]),
}

impl Lines<'_> {
    fn len(&self) -> usize {
        match self {
            Lines::Range(r) => r.len(),
            Lines::List(l) => l.len(),
        }
    }

    /// The `k`-th line.
    #[inline]
    fn get(&self, k: usize) -> u32 {
        match self {
            Lines::Range(r) => r.start + k as u32,
            Lines::List(l) => l[k],
        }
    }
}

/// Lines of a vocabulary grouped by the shard of their token's hash, each shard in line
/// order, with their tokens copied side by side: work on a shard touches only its own
/// memory, not tokens scattered over a vocabulary file of tens of MB. Shard `s` is members
/// `bounds[s]..bounds[s + 1]`; member `k` is line `lines[k]`, token
/// `bytes[ends[k - 1]..ends[k]]` (from 0 for the first).
struct Grouped {
    bounds: Vec<usize>,
    lines: Vec<u32>,
    ends: Vec<u32>,
    bytes: Vec<u8>,
}

impl Grouped {
    /// Groups lines `ids` of `vocab`, in parallel pieces: each piece counts its members and
    /// their bytes per shard, then copies them straight to their places.
    fn new(vocab: &Vocab, ids: Lines<'_>, hash: Hash) -> Grouped {
        const PIECE: usize = 1 << 16;
        let token = |k: usize| vocab.token(ids.get(k) as usize);
        // Each member's shard, and the members and bytes of each shard in each piece.
        let mut shard_ids = vec![0u8; ids.len()];
        let counts: Vec<[(usize, usize); SHARDS]> = shard_ids
            .par_chunks_mut(PIECE)
            .enumerate()
            .map(|(p, piece)| {
                let mut count = [(0, 0); SHARDS];
                for (j, s) in piece.iter_mut().enumerate() {
                    let t = token(p * PIECE + j);
                    *s = shard_of(hash(t)) as u8;
                    let c = &mut count[*s as usize];
                    *c = (c.0 + 1, c.1 + t.len());
                }
                count
            })
            .collect();
        let total: usize = counts.iter().flatten().map(|c| c.1).sum();
        let mut bounds = vec![0; SHARDS + 1];
        for s in 0..SHARDS {
            bounds[s + 1] = bounds[s] + counts.iter().map(|c| c[s].0).sum::<usize>();
        }
        let (mut lines, mut ends) = (vec![0u32; ids.len()], vec![0u32; ids.len()]);
        let mut bytes = vec![0u8; total];
        // Each piece's part of each shard, shard after shard, and where its bytes start.
        let mut parts: Vec<Vec<Part>> = counts.iter().map(|_| Vec::with_capacity(SHARDS)).collect();
        let mut rest = (&mut lines[..], &mut ends[..], &mut bytes[..]);
        let mut offset = 0;
        for s in 0..SHARDS {
            for (p, count) in counts.iter().enumerate() {
                let (n, size) = count[s];
                let (l, more_l) = std::mem::take(&mut rest.0).split_at_mut(n);
                let (e, more_e) = std::mem::take(&mut rest.1).split_at_mut(n);
                let (b, more_b) = std::mem::take(&mut rest.2).split_at_mut(size);
                parts[p].push(Part {
                    lines: l,
                    ends: e,
                    bytes: b,
                    offset,
                    filled: (0, 0),
                });
                rest = (more_l, more_e, more_b);
                offset += size;
            }
        }
        shard_ids
            .par_chunks(PIECE)
            .zip(parts)
            .enumerate()
            .for_each(|(p, (piece, mut parts))| {
                for (j, &s) in piece.iter().enumerate() {
                    let k = p * PIECE + j;
                    let (part, t) = (&mut parts[s as usize], token(k));
                    let (n, at) = part.filled;
                    part.lines[n] = ids.get(k);
                    part.bytes[at..at + t.len()].copy_from_slice(t);
                    part.ends[n] = (part.offset + at + t.len()) as u32;
                    part.filled = (n + 1, at + t.len());
                }
            });
        Grouped {
            bounds,
            lines,
            ends,
            bytes,
        }
    }

    /// The members of shard `s`.
    fn shard(&self, s: usize) -> Range<usize> {
        self.bounds[s]..self.bounds[s + 1]
    }

    /// Member `k`'s token.
    #[inline]
    fn token(&self, k: usize) -> &[u8] {
        let start = if k == 0 { 0 } else { self.ends[k - 1] as usize };
        &self.bytes[start..self.ends[k] as usize]
    }
}

/// One piece's part of one shard while grouping: where its members go, where its bytes
/// start in the whole, and how much of it is filled (members, bytes).
struct Part<'a> {
    lines: &'a mut [u32],
    ends: &'a mut [u32],
    bytes: &'a mut [u8],
    offset: usize,
    filled: (usize, usize),
}

/// Two lines holding the same token: (first, second).
type Duplicate = (usize, usize);

/// Fills `table` with the members of shard `s` of `grouped`, leaving out a member whose
/// token is already there; returns the first such pair of lines.
fn index_shard(
    table: &mut HashTable<u32>,
    grouped: &Grouped,
    s: usize,
    hash: Hash,
) -> Option<Duplicate> {
    let members = grouped.shard(s);
    let token = |k: u32| grouped.token(k as usize);
    table.clear();
    table.reserve(members.len(), |&m| hash(token(m)));
    let mut dup = None;
    for k in members.start as u32..members.end as u32 {
        let h = hash(token(k));
        match table.find(h, |&m| token(m) == token(k)) {
            // Members come in line order, so the one found is the token's first line, and
            // the first pair found has the smallest second line.
            Some(&m) => {
                let pair = (grouped.lines[m as usize], grouped.lines[k as usize]);
                dup = dup.or(Some((pair.0 as usize, pair.1 as usize)));
            }
            None => {
                table.insert_unique(h, k, |&m| hash(token(m)));
            }
        }
    }
    dup
}

/// The pair of lines of `grouped` holding the same token with the smallest second line.
fn first_duplicate(grouped: &Grouped, hash: Hash) -> Option<Duplicate> {
    (0..SHARDS)
        .into_par_iter()
        .map_init(HashTable::new, |table, s| {
            index_shard(table, grouped, s, hash)
        })
        .flatten()
        .min_by_key(|d| d.1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn file(content: &[u8]) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(content).unwrap();
        f
    }

    fn tokens(v: &Vocab) -> Vec<String> {
        (0..v.len())
            .map(|i| String::from_utf8(v.token(i).to_vec()).unwrap())
            .collect()
    }

    #[test]
    fn newlines_are_found_exactly() {
        // Every byte value around newlines, at every offset of a word.
        let mut bytes: Vec<u8> = (0..=255u8).collect();
        bytes.extend([
            b'\n', 0x8A, 0x0B, b'\n', b'\n', 0x09, 0x00, b'\n', 0x80, 0xFF,
        ]);
        for start in 0..9 {
            let hay = &bytes[start..];
            let mut found = Vec::new();
            newlines(hay, |i| found.push(i));
            let want: Vec<usize> = (0..hay.len()).filter(|&i| hay[i] == b'\n').collect();
            assert_eq!(found, want, "from {start}");
        }
        // Pieces of a long text, with and without a final newline.
        let text: Vec<u8> = (0..3_000_000u32)
            .map(|i| {
                if i % 7 == 3 || i % 11 == 0 {
                    b'\n'
                } else {
                    b'a'
                }
            })
            .collect();
        for end in [text.len(), text.len() - 1, text.len() - 2] {
            let t = &text[..end];
            let mut want = vec![0u32];
            want.extend(
                (0..t.len())
                    .filter(|&i| t[i] == b'\n')
                    .map(|i| i as u32 + 1),
            );
            if *want.last().unwrap() as usize != t.len() {
                want.push(t.len() as u32 + 1);
            }
            assert_eq!(line_starts(t), want);
        }
    }

    #[test]
    fn tensorflow_line_rules() {
        let f = file(b"a\r\nb\n c\t\nd");
        assert_eq!(
            tokens(&Vocab::read(f.path(), None).unwrap()),
            ["a", "b", " c\t", "d"]
        );
        // One trailing \r only.
        let f = file(b"a\r\r\nb\n");
        assert_eq!(tokens(&Vocab::read(f.path(), None).unwrap()), ["a\r", "b"]);
        // A final newline does not add a line.
        let f = file(b"a\nb\n");
        assert_eq!(Vocab::read(f.path(), None).unwrap().len(), 2);
    }

    #[test]
    fn empty_lines_and_files_are_refused_where_read() {
        for bad in [&b"a\n\nb\n"[..], b"a\nb\n\n", b"a\n\r\nb", b"", b"\n"] {
            let f = file(bad);
            assert!(
                matches!(Vocab::read(f.path(), None), Err(Error::Vocab { .. })),
                "{bad:?}"
            );
        }
        // Past the limit nothing is read.
        let f = file(b"a\nb\n\n\n");
        assert_eq!(Vocab::read(f.path(), Some(2)).unwrap().len(), 2);
        // Limit beyond the file, and limit 0.
        let f = file(b"a\nb\n");
        assert!(Vocab::read(f.path(), Some(3)).is_err());
        assert!(Vocab::read(f.path(), Some(0)).is_err());
    }

    #[test]
    fn kernel_test_vectors() {
        // GenerateVocabRemapping kernel tests: new = MISSING knitting eminem,
        // old = knitting eminem MISSING.
        let new = file(b"MISSING\nknitting\neminem\n");
        let old = file(b"knitting\neminem\nMISSING\n");
        let n = Vocab::read(new.path(), None).unwrap();
        let o = Vocab::read(old.path(), None).unwrap();
        assert_eq!(remap(&n, 3, &o).unwrap(), [2, 0, 1]);
        assert_eq!(remap(&n, 3, &n).unwrap(), [0, 1, 2]);
        let o2 = Vocab::read(old.path(), Some(2)).unwrap();
        assert_eq!(remap(&n, 3, &o2).unwrap(), [MISSING, 0, 1]);
        assert!(remap(&n, 4, &o).is_err());
    }

    #[test]
    fn duplicates_name_the_token_and_both_lines() {
        let old = file(b"a\nb\nc\nb\na\n");
        let new = file(b"x\ny\nx\n");
        let o = Vocab::read(old.path(), None);
        let n = Vocab::read(new.path(), None).unwrap();
        match remap(&n, 1, &o.unwrap()) {
            Err(Error::DuplicateToken {
                token,
                first,
                second,
                ..
            }) => {
                assert_eq!((token.as_str(), first, second), ("b", 2, 4));
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
        // Old duplicates beyond old_vocab_size are not read.
        let o = Vocab::read(old.path(), Some(3)).unwrap();
        assert_eq!(remap(&n, 2, &o).unwrap(), [MISSING, MISSING]);
        // New duplicates only count inside new_vocab_size.
        match remap(&n, 3, &o) {
            Err(Error::DuplicateToken {
                token,
                first,
                second,
                ..
            }) => {
                assert_eq!((token.as_str(), first, second), ("x", 1, 3));
            }
            other => panic!("{:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn new_duplicates_report_the_earliest_second_line() {
        let old = file(b"a\nb\nc\n");
        let o = Vocab::read(old.path(), None).unwrap();
        // b is in the old vocabulary (both lines map to old line 2), z is not; the pair
        // whose second line comes first is reported, with the first line of its token.
        for (text, want) in [
            (&b"q\nb\nz\nz\nb\n"[..], ("z", 3, 4)),
            (b"q\nb\nz\nb\nz\n", ("b", 2, 4)),
            (b"b\nq\nb\nb\n", ("b", 1, 3)),
        ] {
            let new = file(text);
            let n = Vocab::read(new.path(), None).unwrap();
            match remap(&n, n.len(), &o) {
                Err(Error::DuplicateToken {
                    token,
                    first,
                    second,
                    ..
                }) => assert_eq!((token.as_str(), first, second), want),
                other => panic!("{:?}", other.map(|_| ())),
            }
        }
    }

    #[test]
    fn lookup_in_blocks_gives_the_same_map() {
        let old: Vec<String> = (0..5000).map(|i| format!("w{}", i * 3)).collect();
        let new: Vec<String> = (0..4000).map(|i| format!("w{}", i * 5)).collect();
        let o = file((old.join("\n") + "\n").as_bytes());
        let n = file((new.join("\n") + "\n").as_bytes());
        let (o, n) = (
            Vocab::read(o.path(), None).unwrap(),
            Vocab::read(n.path(), None).unwrap(),
        );
        let whole = lookup(&n, 100..3900, &o).unwrap();
        for (k, &m) in whole.iter().enumerate() {
            let want = (100 + k) * 5;
            let line = (want % 3 == 0 && want / 3 < 5000).then_some(want / 3);
            assert_eq!(m, line.map_or(MISSING, |l| l as u32), "line {}", 100 + k);
        }
        for block in [1, 7, 1000, 3800, 5000] {
            assert_eq!(
                lookup_with(&n, 100..3900, &o, block, hash_token).unwrap(),
                whole
            );
        }
    }

    #[test]
    fn large_vocabularies_remap_by_identity() {
        let old: Vec<String> = (0..100_000).map(|i| format!("tok{i}")).collect();
        let new: Vec<String> = (0..100_000)
            .rev()
            .map(|i| format!("tok{}", i * 2))
            .collect();
        let o = file((old.join("\n") + "\n").as_bytes());
        let n = file(new.join("\n").as_bytes());
        let map = remap(
            &Vocab::read(n.path(), None).unwrap(),
            100_000,
            &Vocab::read(o.path(), None).unwrap(),
        )
        .unwrap();
        for (i, &m) in map.iter().enumerate() {
            let want = (99_999 - i) * 2;
            assert_eq!(m, if want < 100_000 { want as u32 } else { MISSING });
        }
    }

    /// TensorFlow's rules, written the obvious way: the old vocabulary's first duplicate,
    /// then each new token's first old line, then the new window's first duplicate.
    fn reference(
        new: &[&str],
        window: Range<usize>,
        old: &[&str],
        new_duplicates: bool,
    ) -> std::result::Result<Vec<u32>, (bool, Duplicate)> {
        fn first_duplicate(tokens: &[&str]) -> Option<Duplicate> {
            let mut first = std::collections::HashMap::new();
            (0..tokens.len()).find_map(|i| match first.get(tokens[i]) {
                Some(&f) => Some((f, i)),
                None => first.insert(tokens[i], i).and(None),
            })
        }
        if let Some(d) = first_duplicate(old) {
            return Err((true, d));
        }
        let map = new[window.clone()]
            .iter()
            .map(|t| {
                old.iter()
                    .position(|o| o == t)
                    .map_or(MISSING, |l| l as u32)
            })
            .collect();
        match first_duplicate(&new[window.clone()]) {
            Some((a, b)) if new_duplicates => Err((false, (a + window.start, b + window.start))),
            _ => Ok(map),
        }
    }

    /// A vocabulary of `n` tokens over a small alphabet: with `unique`, distinct tokens;
    /// otherwise repeats are likely.
    fn some_tokens(n: usize) -> impl Strategy<Value = Vec<String>> {
        let token = "[abc\u{e9}\r]{1,3}".prop_filter("not only \\r", |t| t != "\r");
        prop_oneof![
            prop::collection::vec(token.clone(), 1..=n),
            prop::collection::hash_set(token, 1..=n).prop_map(|s| s.into_iter().collect()),
        ]
    }

    /// Hashes that collide: only four values, each well mixed.
    fn colliding(bytes: &[u8]) -> u64 {
        (hash_token(bytes) % 4).wrapping_mul(0x9E37_79B9_7F4A_7C15)
    }

    proptest! {
        #[test]
        fn remap_and_lookup_match_the_reference(
            old in some_tokens(40),
            new in some_tokens(40),
            cut in (0.0..=1.0f64, 0.0..=1.0f64),
            block in 1usize..50,
            collide: bool,
        ) {
            let hash: Hash = if collide { colliding } else { hash_token };
            // Tokens ending in \r\r keep one \r: write them as TensorFlow would read them.
            let write = |tokens: &[String]| file((tokens.join("\n") + "\n").as_bytes());
            let (o, n) = (write(&old), write(&new));
            let (o, n) = (Vocab::read(o.path(), None).unwrap(), Vocab::read(n.path(), None).unwrap());
            let text = |v: &Vocab| -> Vec<String> {
                (0..v.len()).map(|i| String::from_utf8_lossy(v.token(i)).into_owned()).collect()
            };
            let (old_read, new_read) = (text(&o), text(&n));
            let old_ref: Vec<&str> = old_read.iter().map(|s| s.as_str()).collect();
            let new_ref: Vec<&str> = new_read.iter().map(|s| s.as_str()).collect();
            let lo = (cut.0 * n.len() as f64) as usize;
            let hi = lo + (cut.1 * (n.len() - lo) as f64) as usize;
            let got = |r: Result<Vec<u32>>| match r {
                Ok(map) => Ok(map),
                Err(Error::DuplicateToken { file, first, second, .. }) => {
                    Err((file == o.path, (first - 1, second - 1)))
                }
                Err(e) => panic!("{e}"),
            };
            prop_assert_eq!(
                got(lookup_with(&n, lo..hi, &o, block, hash)),
                reference(&new_ref, lo..hi, &old_ref, false)
            );
            prop_assert_eq!(
                got(remap_with(&n, hi, &o, hash)),
                reference(&new_ref, 0..hi, &old_ref, true)
            );
        }
    }
}
