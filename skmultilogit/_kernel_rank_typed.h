/*
 * One variant of the class-pair sums' rank update, for one value type
 * SKML_T: the function SKML_RANK_NAME, compiled with the attributes
 * SKML_RANK_TARGET (a target, or nothing for the baseline), working in
 * vectors of SKML_RANK_BYTES bytes, a tile SKML_RANK_VECTORS vectors
 * high and SKML_RANK_COLUMNS columns wide. Included by _kernel_pairs_typed.h
 * once per type and target (GCC and clang only: vector extensions); no
 * include guard on purpose.
 *
 * target += sum over `count` rows g_r (each `pad` values apart, zero beyond
 * the `size` that count) of g_r g_r^T, on and above the diagonal: target
 * is column-major, (size, size), entry (a, b) at a + b * size, a <= b.
 *
 * As a matrix product's inner kernel: a tile of rows a0 .. a0 + height
 * and columns b0 .. b0 + SKML_RANK_COLUMNS is held in vector sums while the
 * rows stream past (per row, the tile's vector loads and a multiply-add by
 * a broadcast entry per column and vector), then added to the target's
 * upper triangle. The tile's SKML_RANK_VECTORS * SKML_RANK_COLUMNS sums must
 * stay in registers with the loads beside them: GCC keeps a vector wider
 * than the target's registers, or more sums than it has registers for, on
 * the stack, and every multiply-add then loads and stores its sum (the AVX2
 * clone of a tile of 16 floats and eight columns in 64-byte vectors ran at
 * 2.5 G multiply-adds/s on 806 rows of 65 columns, its 12 ymm sums of
 * 32-byte vectors at 28). Tiles wholly below the diagonal are skipped; the
 * padding's columns are zero, so a tile may run past the last column. The
 * tile's height (its vectors' values) must divide `pad`.
 */
SKML_RANK_TARGET
static void SKML_RANK_NAME(SKML_T *SKML_RESTRICT target, const SKML_T *SKML_RESTRICT rows,
                           ptrdiff_t count, ptrdiff_t size, ptrdiff_t pad)
{
    typedef SKML_T vec __attribute__((vector_size(SKML_RANK_BYTES)));
    enum { lanes = SKML_RANK_BYTES / sizeof(SKML_T), height = SKML_RANK_VECTORS * lanes };
    for (ptrdiff_t a0 = 0; a0 < size; a0 += height) {
        for (ptrdiff_t b0 = a0; b0 < size; b0 += SKML_RANK_COLUMNS) {
            vec sums[SKML_RANK_COLUMNS][SKML_RANK_VECTORS];
            for (int j = 0; j < SKML_RANK_COLUMNS; j++)
                for (int t = 0; t < SKML_RANK_VECTORS; t++)
                    sums[j][t] = (vec){0};
            const SKML_T *g = rows;
            for (ptrdiff_t r = 0; r < count; r++, g += pad) {
                vec v[SKML_RANK_VECTORS];
                for (int t = 0; t < SKML_RANK_VECTORS; t++)
                    memcpy(&v[t], g + a0 + t * lanes, sizeof(vec));
                for (int j = 0; j < SKML_RANK_COLUMNS; j++) {
                    const SKML_T entry = g[b0 + j];
                    for (int t = 0; t < SKML_RANK_VECTORS; t++)
                        sums[j][t] += v[t] * entry;
                }
            }
            for (ptrdiff_t j = 0; j < SKML_RANK_COLUMNS && b0 + j < size; j++) {
                SKML_T tile[height];
                memcpy(tile, sums[j], sizeof tile);
                const ptrdiff_t b = b0 + j;
                const ptrdiff_t stop = b + 1 < a0 + height ? b + 1 : a0 + height;
                for (ptrdiff_t a = a0; a < stop; a++)
                    target[a + b * size] += tile[a - a0];
            }
        }
    }
}
