// gather_rows.wgsl: the row remap of axis 0 for rows of whole words. Output row r of the chunk
// becomes old row s of the bound window of the old table, for every (r, s) of the dispatch's
// row set. Rows whose source lies in another window are gathered by that window's dispatch;
// rows with no source are left to fill_missing.wgsl. Rows of odd-width f16/bf16 tables are not
// whole words: remap_cols.wgsl moves them, element by element.
//
// Needs rows.wgsl and a word file in front, which defines the unit `Word` rows are moved in
// (`words_per_row` of the row set counts such units): word_u32.wgsl or word_vec4.wgsl, each
// followed by copy_span.wgsl, or word_vec4_split.wgsl, which has its own `copy_span` (moving
// some units of one row).

// Mirrors `gather_rows::Params` in src/engine/gpu/gather_rows.rs.
struct Params {
    rows: RowSet,
    old_offset: u32, // the window's lead: whole units
    old_shift: u32, // word_vec4_split.wgsl: and u32 words (1..=3)
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> list: array<u32>; // (output row, window row) pairs
@group(0) @binding(2) var<storage, read> old: array<Word>;
@group(0) @binding(3) var<storage, read_write> out: array<Word>;

fn set_row(i: u32) -> vec2<u32> {
    let rs = params.rows;
    if (rs.mode == ROWS_LIST) {
        return vec2<u32>(list[rs.list_offset + 2u * i], list[rs.list_offset + 2u * i + 1u]);
    }
    return vec2<u32>(rs.out_row0 + i * rs.step, rs.src_row0 + i * rs.step);
}

fn do_words(row: vec2<u32>, first: u32, end: u32) {
    let wpr = params.rows.words_per_row;
    copy_span(row.x * wpr, row.y * wpr, first, end);
}

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    for_each_item(params.rows, gid.x, groups.x);
}
