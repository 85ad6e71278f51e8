// fill_missing.wgsl: initialisation of the cells that have no past. For every output row of the
// dispatch's row set, either the whole row (its row has no source) or only the columns whose
// col_map entry is MISSING receive the initializer's value at their global element index.
// Needs philox.wgsl, float.wgsl, init.wgsl and rows.wgsl.

// Bytes per element: 2, 4 or 8, the size of DTYPE (init.wgsl). One pipeline per dtype and
// kind of fill, so that each compiles only its own paths (the initializers are inlined at
// every call site).
override ESIZE: u32;

// Mirrors `fill_missing::Params` in src/engine/gpu/fill_missing.rs.
struct Params {
    rows: RowSet,
    cols: u32,
    whole: u32, // 1: every cell of the rows; 0: only the MISSING columns of col_map
    _pad0: u32,
    _pad1: u32,
    init: InitSpec,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> list: array<u32>; // output rows
@group(0) @binding(2) var<storage, read> col_map: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

fn set_row(i: u32) -> vec2<u32> {
    let rs = params.rows;
    if (rs.mode == ROWS_LIST) {
        return vec2<u32>(list[rs.list_offset + i], 0u);
    }
    return vec2<u32>(rs.out_row0 + i * rs.step, 0u);
}

fn is_missing(c: u32) -> bool {
    return params.whole == 1u || col_map[c] == MISSING;
}

fn do_words(row: vec2<u32>, first_word: u32, end: u32) {
    let spec = params.init;
    let first = row.x * params.cols; // first element of the output row, chunk-local
    if (params.whole == 1u && FILL == FILL_CONSTANT && (ESIZE != 2u || params.cols % 2u == 0u)) {
        whole_constant_words(spec, first * ESIZE / 4u, first_word, end);
        return;
    }
    // (whole rows of a constant were stored above)
    if (ESIZE == 4u) {
        f32_words(spec, first, first_word, end);
        return;
    }
    if (ESIZE == 8u) {
        // word j is half j % 2 of element j / 2: each element computed once for both its words
        var j = first_word;
        loop {
            if (j >= end) {
                break;
            }
            let c = j >> 1u;
            if (is_missing(c)) {
                let bits = init_element(spec, first + c);
                out[first * 2u + j] = select(bits.x, bits.y, (j & 1u) == 1u);
                if ((j & 1u) == 0u && j + 1u < end) {
                    out[first * 2u + j + 1u] = bits.y;
                }
            }
            j = (j | 1u) + 1u; // the next element's low word
        }
        return;
    }
    if (params.whole == 1u && params.cols % 2u == 0u) {
        whole_half_words(spec, first, first_word, end);
        return;
    }
    for (var j = first_word; j < end; j++) {
        half_word(row, j);
    }
}

// A constant in every element of a row whose words are its own (every row of f32 or f64, rows
// of even width of f16/bf16), starting at word `base` of the chunk: words first_word..end of
// the row, each the same pattern (f64: its low and high words in turn). One store a word, with
// no per-element test.
fn whole_constant_words(spec: InitSpec, base: u32, first_word: u32, end: u32) {
    var lo = spec.const_lo;
    var hi = spec.const_hi;
    if (ESIZE == 2u) {
        lo = (lo & 0xFFFFu) * 0x10001u;
        hi = lo;
    } else if (ESIZE == 4u) {
        hi = lo;
    }
    for (var j = first_word; j < end; j++) {
        out[base + j] = select(lo, hi, (j & 1u) == 1u);
    }
}

// Random f32 elements first + j for the missing j in first_word..end: one Philox block for
// each four consecutive global elements instead of one per element (a thread's span on the
// software driver is up to 64 words), and none for a column with a source (a GPU thread has a
// single word). The same values as `init_element`. One call site of the initializer for whole
// rows and single columns alike: the software driver compiles the pipeline about a quarter
// faster than with one each (medians of ten: 65 against 85 ms), on the critical path of a
// short job.
fn f32_words(spec: InitSpec, first: u32, first_word: u32, end: u32) {
    if (FILL == FILL_CONSTANT) {
        // (only single columns come here: whole rows of a constant are stored above)
        for (var j = first_word; j < end; j++) {
            if (is_missing(j)) {
                out[first + j] = spec.const_lo;
            }
        }
        return;
    }
    var j = first_word;
    loop {
        if (j >= end) {
            break;
        }
        if (!is_missing(j)) {
            j++;
            continue;
        }
        let index = init_index(spec, first + j);
        let bits = init_block(spec, index);
        for (var lane = index.x & 3u; lane < 4u && j < end; lane++) {
            if (is_missing(j)) {
                out[first + j] = random_value(spec, bits[lane]);
            }
            j++;
        }
    }
}

// Random f16/bf16 elements of a whole row of even width (so the row starts on a word and its
// words are its own): words j in first_word..end, elements first + 2j and first + 2j + 1, one
// Philox block for each two words. The same values as `half_word`.
fn whole_half_words(spec: InitSpec, first: u32, first_word: u32, end: u32) {
    var j = first_word;
    loop {
        if (j >= end) {
            break;
        }
        let index = init_index(spec, first + 2u * j);
        let bits = init_block(spec, index);
        // the index is even (rows of even width start at even elements): lanes 0 and 2
        for (var lane = index.x & 3u; lane < 4u && j < end; lane += 2u) {
            let lo = encode(DTYPE, random_value(spec, bits[lane])).x & 0xFFFFu;
            let hi = encode(DTYPE, random_value(spec, bits[lane + 1u])).x & 0xFFFFu;
            out[first / 2u + j] = lo | (hi << 16u);
            j++;
        }
    }
}

// f16/bf16: the word may be shared with the neighbour row or a column with a source.
fn half_word(row: vec2<u32>, j: u32) {
    let cols = params.cols;
    let first = row.x * cols;
    let w = first / 2u + j;
    var word = 0u;
    var mask = 0u;
    for (var s = 0u; s < 2u; s++) {
        let e = 2u * w + s;
        if (e >= first && e < first + cols && is_missing(e - first)) {
            word |= (init_element(params.init, e).x & 0xFFFFu) << (16u * s);
            mask |= 0xFFFFu << (16u * s);
        }
    }
    if (mask == 0xFFFFFFFFu) {
        out[w] = word;
    } else if (mask != 0u) {
        out[w] = (out[w] & ~mask) | word;
    }
}

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for_each_item(params.rows, gid.x, groups.x);
}
