// fill_missing.wgsl: initialisation of the cells that have no past. For every output row of the
// dispatch's row set, either the whole row (its row has no source) or only the columns whose
// col_map entry is MISSING receive the initializer's value at their global element index.
// Needs philox.wgsl, float.wgsl, init.wgsl and rows.wgsl.

// Mirrors `fill_missing::Params` in src/engine/gpu/fill_missing.rs.
struct Params {
    rows: RowSet,
    cols: u32,
    esize: u32, // bytes per element: 2, 4 or 8
    whole: u32, // 1: every cell of the rows; 0: only the MISSING columns of col_map
    _pad: u32,
    init: InitSpec,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> list: array<u32>;
@group(0) @binding(2) var<storage, read> col_map: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<u32>;

fn is_missing(c: u32) -> bool {
    return params.whole == 1u || col_map[c] == MISSING;
}

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let rs = params.rows;
    let wpr = rs.words_per_row;
    let total = rs.count * wpr;
    let cols = params.cols;
    let spec = params.init;
    // Item t = i * wpr + j is word j of the set's i-th row (see gather_rows.wgsl).
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
        var r = rs.out_row0 + i * rs.step;
        if (rs.mode == ROWS_LIST) {
            r = list[rs.list_offset + i];
        }
        let first = r * cols;
        if (params.esize == 4u) {
            if (is_missing(j)) {
                out[first + j] = init_element(spec, first + j).x;
            }
            continue;
        }
        if (params.esize == 8u) {
            let c = j >> 1u;
            if (is_missing(c)) {
                let bits = init_element(spec, first + c);
                out[first * 2u + j] = select(bits.x, bits.y, (j & 1u) == 1u);
            }
            continue;
        }
        let w = first / 2u + j;
        var word = 0u;
        var mask = 0u;
        for (var s = 0u; s < 2u; s++) {
            let e = 2u * w + s;
            if (e >= first && e < first + cols && is_missing(e - first)) {
                word |= (init_element(spec, e).x & 0xFFFFu) << (16u * s);
                mask |= 0xFFFFu << (16u * s);
            }
        }
        if (mask == 0xFFFFFFFFu) {
            out[w] = word;
        } else if (mask != 0u) {
            out[w] = (out[w] & ~mask) | word;
        }
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
