// word_u64x2.wgsl: gather_rows.wgsl moves rows in 16-byte units held as vec2<u64>, on a device
// with 64-bit integers (requested on the software Vulkan driver). The same bytes as a
// vec4<u32> unit (word_vec4.wgsl) in half the components: the software driver loads and
// stores each component of each lane on its own, so a gather there does half the work.
alias Word = vec2<u64>;
