// word_u32.wgsl: gather_rows.wgsl moves rows in units of one u32 (rows of 4k bytes).
alias Word = u32;
