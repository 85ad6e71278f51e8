// remap_cols.wgsl: the column remap of axis 1. Element (r, c) of the chunk becomes element
// (s, col_map[c]) of the bound window of the old table, for every (r, s) of the dispatch's row
// set; columns whose entry is MISSING (new and OOV columns) are left to fill_missing.wgsl.
// Needs rows.wgsl.

// Mirrors `remap_cols::Params` in src/engine/gpu/remap_cols.rs.
struct Params {
    rows: RowSet,
    cols: u32, // columns of the output
    old_cols: u32, // columns of the old table
    esize: u32, // bytes per element: 2, 4 or 8
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> list: array<u32>;
@group(0) @binding(2) var<storage, read> old: array<u32>;
@group(0) @binding(3) var<storage, read> col_map: array<u32>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;

fn row_pair(i: u32) -> vec2<u32> {
    let rs = params.rows;
    if (rs.mode == ROWS_RANGE) {
        return vec2<u32>(rs.out_row0 + i * rs.step, rs.src_row0 + i * rs.step);
    }
    let k = rs.list_offset + 2u * i;
    return vec2<u32>(list[k], list[k + 1u]);
}

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let wpr = params.rows.words_per_row;
    let total = params.rows.count * wpr;
    let cols = params.cols;
    let old_cols = params.old_cols;
    for (var t = gid.x; t < total; t += groups.x * WORKGROUP) {
        let i = t / wpr;
        let j = t - i * wpr;
        let rs = row_pair(i);
        if (params.esize == 4u) {
            let c = col_map[j];
            if (c != MISSING) {
                out[rs.x * cols + j] = old[rs.y * old_cols + c];
            }
            continue;
        }
        if (params.esize == 8u) {
            // word j is half j % 2 of element j / 2
            let c = col_map[j >> 1u];
            if (c != MISSING) {
                out[rs.x * cols * 2u + j] = old[(rs.y * old_cols + c) * 2u + (j & 1u)];
            }
            continue;
        }
        // f16/bf16: the word holds up to two elements of this row, each with its own column.
        let first = rs.x * cols;
        let w = first / 2u + j;
        var word = 0u;
        var mask = 0u;
        for (var s = 0u; s < 2u; s++) {
            let e = 2u * w + s;
            if (e >= first && e < first + cols) {
                let c = col_map[e - first];
                if (c != MISSING) {
                    let src = rs.y * old_cols + c;
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
}
