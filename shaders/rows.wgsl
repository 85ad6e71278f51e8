// rows.wgsl: which output rows a dispatch handles, and 16-bit halves of u32 words.
//
// Library file (no entry point) shared by the three kernels. It holds the loop every kernel
// runs over its rows (`for_each_item`), which calls two functions the kernel defines:
//   fn set_row(i: u32) -> vec2<u32>                  the i-th row of the set: (output, source)
//   fn do_words(row: vec2<u32>, first: u32, end: u32) the kernel's work on words first..end
//                                                    of that row
//
// Data layout: every table is a flat little-endian stream of elements stored as array<u32>
// (2 elements per word for f16/bf16, 1 for f32, half an element for f64). An output chunk starts
// on a word boundary. A dispatch handles a set of output rows (`RowSet`) of the chunk; a thread
// handles one word of one row at a time: word j of the row's span, the `words_per_row` words
// that hold the row (gather_rows.wgsl counts in its own unit, u32 or vec4<u32>). Rows of whole
// words never share a word. For f16/bf16 tables of odd width a row is 2 mod 4 bytes, so local
// rows 2i and 2i + 1 share one word: the host then puts rows of one parity per dispatch, and a
// thread writing only part of a word reads, merges and writes it back; dispatches run one after
// the other, so the other half is never written concurrently.

// Mirrors `RowSet` in src/engine/gpu/kernels.rs (8 u32 = 32 bytes).
struct RowSet {
    count: u32, // rows in this dispatch
    mode: u32, // ROWS_LIST or ROWS_RANGE
    list_offset: u32, // ROWS_LIST: first word of the entries in `list`
    step: u32, // ROWS_RANGE: distance between consecutive rows (1, or 2 for one parity)
    out_row0: u32, // ROWS_RANGE: first output row (chunk-local)
    src_row0: u32, // ROWS_RANGE: its source row (window-local)
    words_per_row: u32, // words in a row's span: ceil(row_bytes / 4)
    span: u32, // consecutive words of a row per thread item (1..=words_per_row)
}

// Entries in `list`: (output row, source row) pairs for the gathers, output rows for the fill.
const ROWS_LIST: u32 = 0u;
// Rows out_row0 + i * step, sourced from src_row0 + i * step.
const ROWS_RANGE: u32 = 1u;

// An index-vector entry with no source (`vocab::MISSING`).
const MISSING: u32 = 0xFFFFFFFFu;

// Threads per workgroup of every kernel.
const WORKGROUP: u32 = 256u;

// 16-bit half `which` (0 = low = the element at the even index) of `word`.
fn half_of(word: u32, which: u32) -> u32 {
    return (word >> (16u * which)) & 0xFFFFu;
}

// Runs `do_words` on every word of every row of the set `rs`. An item is `span` consecutive
// words of one row: the host picks 1 on GPUs, where neighbouring threads then touch
// neighbouring words, and longer spans on the software driver, where every item has a fixed
// cost. Thread `gid` of `groups` workgroups takes items gid, gid + stride, ... (a grid stride,
// so any number of items works within the workgroup limit); (row, block) advance by the
// stride without a division per item.
fn for_each_item(rs: RowSet, gid: u32, groups: u32) {
    let wpr = rs.words_per_row;
    let span = max(rs.span, 1u);
    let ipr = (wpr + span - 1u) / span; // items per row
    let total = rs.count * ipr;
    let stride = groups * WORKGROUP;
    let stride_rows = stride / ipr;
    let stride_blocks = stride - stride_rows * ipr;
    var t = gid;
    var i = t / ipr;
    var b = t - i * ipr;
    loop {
        if (t >= total) {
            break;
        }
        let first = b * span;
        do_words(set_row(i), first, min(first + span, wpr));
        continuing {
            t += stride;
            i += stride_rows;
            b += stride_blocks;
            if (b >= ipr) {
                b -= ipr;
                i += 1u;
            }
        }
    }
}

