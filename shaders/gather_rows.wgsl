// gather_rows.wgsl: the row remap of axis 0. Output row r of the chunk becomes old row s of the
// bound window of the old table, for every (r, s) of the dispatch's row set. Rows whose source
// lies in another window are gathered by that window's dispatch; rows with no source are left
// to fill_missing.wgsl. Needs rows.wgsl.

// Mirrors `gather_rows::Params` in src/engine/gpu/gather_rows.rs.
struct Params {
    rows: RowSet,
    row_bytes: u32, // bytes of an output row (= an old row: axis 0 keeps the columns)
    cols: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> list: array<u32>;
@group(0) @binding(2) var<storage, read> old: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

// (output row, window row) of the i-th row of the dispatch.
fn row_pair(i: u32) -> vec2<u32> {
    let rs = params.rows;
    if (rs.mode == ROWS_RANGE) {
        return vec2<u32>(rs.out_row0 + i * rs.step, rs.src_row0 + i * rs.step);
    }
    let k = rs.list_offset + 2u * i;
    return vec2<u32>(list[k], list[k + 1u]);
}

// A grid-stride loop: any number of rows with at most the device's workgroup limit.
@compute @workgroup_size(WORKGROUP)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let wpr = params.rows.words_per_row;
    let total = params.rows.count * wpr;
    let whole_words = (params.row_bytes & 3u) == 0u;
    let cols = params.cols;
    for (var t = gid.x; t < total; t += groups.x * WORKGROUP) {
        let i = t / wpr;
        let j = t - i * wpr;
        let rs = row_pair(i);
        if (whole_words) {
            // f32, f64 and even-width f16/bf16: a row is whole words, copy word j.
            out[rs.x * wpr + j] = old[rs.y * wpr + j];
            continue;
        }
        // Odd-width f16/bf16: word j of the row's span holds one or two of its elements.
        let first = rs.x * cols; // first element of the output row
        let w = first / 2u + j;
        var word = 0u;
        var mask = 0u;
        for (var s = 0u; s < 2u; s++) {
            let e = 2u * w + s;
            if (e >= first && e < first + cols) {
                let src = rs.y * cols + (e - first);
                word |= half_of(old[src >> 1u], src & 1u) << (16u * s);
                mask |= 0xFFFFu << (16u * s);
            }
        }
        if (mask == 0xFFFFFFFFu) {
            out[w] = word;
        } else {
            out[w] = (out[w] & ~mask) | word;
        }
    }
}
