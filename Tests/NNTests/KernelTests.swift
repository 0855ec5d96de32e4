import CKernels
import Testing

/// The bias helpers against plain loops, for the shapes they special-case (one to a few columns,
/// row counts that leave a remainder of 16 lanes) and the general case.
@Test(arguments: [(1, 37), (2, 9), (4, 100), (3, 11), (5, 7), (16, 3), (64, 5)])
func columnSumsAndRowFillsMatchLoops(columns: Int, rows: Int) {
    let x = (0..<(rows * columns)).map { Float(($0 * 7919) % 23) - 11 }
    var sums = [Float](repeating: .nan, count: columns)
    vae_column_sums(x, rows, columns, &sums)
    for c in 0..<columns {
        let expected = (0..<rows).reduce(Float(0)) { $0 + x[$1 * columns + c] }
        #expect(sums[c] == expected, "column \(c) of \(columns)")
    }
    let row = (0..<columns).map { Float($0) + 0.5 }
    var filled = [Float](repeating: .nan, count: rows * columns)
    vae_fill_rows(&filled, row, rows, columns)
    #expect(filled == (0..<(rows * columns)).map { row[$0 % columns] })
}

@Test func transposeMovesEveryElement() {
    for (rows, columns) in [(1, 5), (7, 1), (9, 13), (64, 49), (49, 64), (16, 16), (33, 17), (17, 100)] {
        let src = (0..<(rows * columns)).map(Float.init)
        var dst = [Float](repeating: .nan, count: rows * columns)
        vae_transpose(src, rows, columns, &dst)
        for r in 0..<rows { for c in 0..<columns { #expect(dst[c * rows + r] == src[r * columns + c]) } }
    }
}
