import CISAL

/// Intel ISA-L's Reed-Solomon over GF(2^8) (its CRC kernels are behind Support/Checksum).
/// Matrices are Cauchy (`gf_gen_cauchy1_matrix`): every k-row subset is invertible, so any k of
/// the k+m shards rebuild the data.
enum ISAL {
    /// The (k+m)×k encoding matrix; the top k rows are the identity.
    static func cauchyMatrix(k: Int, m: Int) -> [UInt8] {
        var a = [UInt8](repeating: 0, count: (k + m) * k)
        gf_gen_cauchy1_matrix(&a, Int32(k + m), Int32(k))
        return a
    }

    /// Expanded multiplication tables for `rows` output rows of a `rows`×k matrix.
    static func tables(k: Int, rows: Int, matrix: [UInt8]) -> [UInt8] {
        var matrix = matrix
        var g = [UInt8](repeating: 0, count: 32 * k * rows)
        ec_init_tables(Int32(k), Int32(rows), &matrix, &g)
        return g
    }

    /// Inverts a k×k matrix; nil when singular.
    static func invert(_ matrix: [UInt8], k: Int) -> [UInt8]? {
        var input = matrix
        var out = [UInt8](repeating: 0, count: k * k)
        return gf_invert_matrix(&input, &out, Int32(k)) == 0 ? out : nil
    }

    /// outputs[r] = Σ table-row r ⊗ inputs, over buffers of `length` bytes the caller holds.
    static func apply(tables: [UInt8], inputs: [UnsafeMutablePointer<UInt8>], outputs: [UnsafeMutablePointer<UInt8>], length: Int) {
        guard length > 0, !outputs.isEmpty else { return }
        var ins = inputs.map(Optional.some), outs = outputs.map(Optional.some)
        tables.withUnsafeBufferPointer { t in
            ec_encode_data(Int32(length), Int32(ins.count), Int32(outs.count), UnsafeMutablePointer(mutating: t.baseAddress!), &ins, &outs)
        }
    }
}
