// gather_rows.wgsl: the row remap of axis 0 for rows of whole words. Output row r of the chunk
// becomes old row s of the bound window of the old table, for every (r, s) of the dispatch's
// row set. Rows whose source lies in another window are gathered by that window's dispatch;
// rows with no source are left to fill_missing.wgsl. Rows of odd-width f16/bf16 tables are not
// whole words: remap_cols.wgsl moves them, element by element.
//
// Needs rows.wgsl and a word file in front: word_u32.wgsl or word_vec4.wgsl, which define the
// unit `Word` rows are moved in (`words_per_row` of the row set counts such units).

// Mirrors `gather_rows::Params` in src/engine/gpu/gather_rows.rs.
struct Params {
    rows: RowSet,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> list: array<u32>;
@group(0) @binding(2) var<storage, read> old: array<Word>;
@group(0) @binding(3) var<storage, read_write> out: array<Word>;

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let rs = params.rows;
    let wpr = rs.words_per_row;
    let total = rs.count * wpr;
    // Item t = i * wpr + j is word j of the set's i-th row. A grid stride covers any number of
    // items; (i, j) advance by the stride without a division per item.
    let stride = groups.x * WORKGROUP;
    let stride_rows = stride / wpr;
    let stride_words = stride - stride_rows * wpr;
    var t = gid.x;
    var i = t / wpr;
    var j = t - i * wpr;
    loop {
        if (t >= total) {
            break;
        }
        var out_row = rs.out_row0 + i * rs.step;
        var src_row = rs.src_row0 + i * rs.step;
        if (rs.mode == ROWS_LIST) {
            out_row = list[rs.list_offset + 2u * i];
            src_row = list[rs.list_offset + 2u * i + 1u];
        }
        out[out_row * wpr + j] = old[src_row * wpr + j];
        continuing {
            t += stride;
            i += stride_rows;
            j += stride_words;
            if (j >= wpr) {
                j -= wpr;
                i += 1u;
            }
        }
    }
}
