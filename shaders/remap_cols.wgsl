// remap_cols.wgsl: the element-wise remap. Element (r, c) of the chunk becomes element
// (s, col_map[c]) of the bound window of the old table, for every (r, s) of the dispatch's row
// set; columns whose entry is MISSING (new and OOV columns) are left to fill_missing.wgsl.
// Used for axis 1 (a column map), and with `identity` set (column c is old column c) for the
// rows of odd-width f16/bf16 tables, which are not whole words.
//
// Needs rows.wgsl.

// Mirrors `remap_cols::Params` in src/engine/gpu/remap_cols.rs.
struct Params {
    rows: RowSet,
    cols: u32, // columns of the output
    old_cols: u32, // columns of the old table
    esize: u32, // bytes per element: 2, 4 or 8
    identity: u32, // 1: no column map, column c is old column c
    old_offset: u32, // words the window's buffer holds before its first row (its lead)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> list: array<u32>; // (output row, window row) pairs
@group(0) @binding(2) var<storage, read> old: array<u32>;
@group(0) @binding(3) var<storage, read> col_map: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;

fn set_row(i: u32) -> vec2<u32> {
    let rs = params.rows;
    if (rs.mode == ROWS_LIST) {
        return vec2<u32>(list[rs.list_offset + 2u * i], list[rs.list_offset + 2u * i + 1u]);
    }
    return vec2<u32>(rs.out_row0 + i * rs.step, rs.src_row0 + i * rs.step);
}

// The old column of column c, or MISSING.
fn source_col(c: u32) -> u32 {
    if (params.identity == 1u) {
        return c;
    }
    return col_map[c];
}

fn do_words(row: vec2<u32>, first: u32, end: u32) {
    let cols = params.cols;
    let old_cols = params.old_cols;
    if (params.esize == 4u) {
        for (var j = first; j < end; j++) {
            let c = source_col(j);
            if (c != MISSING) {
                out[row.x * cols + j] = old[params.old_offset + row.y * old_cols + c];
            }
        }
        return;
    }
    if (params.esize == 8u) {
        // word j is half j % 2 of element j / 2
        for (var j = first; j < end; j++) {
            let c = source_col(j >> 1u);
            if (c != MISSING) {
                out[row.x * cols * 2u + j] = old[params.old_offset + (row.y * old_cols + c) * 2u + (j & 1u)];
            }
        }
        return;
    }
    for (var j = first; j < end; j++) {
        half_word(row, j);
    }
}

// f16/bf16: word j of the row's span holds one or two of its elements, each with its own
// column; a word shared with the neighbour row (odd widths) or with a MISSING column is merged
// with what is there.
fn half_word(row: vec2<u32>, j: u32) {
    let cols = params.cols;
    let old_cols = params.old_cols;
    let first = row.x * cols;
    let w = first / 2u + j;
    var word = 0u;
    var mask = 0u;
    for (var s = 0u; s < 2u; s++) {
        let e = 2u * w + s;
        if (e >= first && e < first + cols) {
            let c = source_col(e - first);
            if (c != MISSING) {
                let src = 2u * params.old_offset + row.y * old_cols + c;
                word |= half_of(old[src >> 1u], src & 1u) << (16u * s);
                mask |= 0xFFFFu << (16u * s);
            }
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
