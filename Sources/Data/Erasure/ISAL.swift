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

    /// outputs[r] = Σ table-row r ⊗ inputs; `inputs` holds k buffers of `length` bytes back to back,
    /// the result holds `rows` buffers back to back.
    static func apply(tables: [UInt8], k: Int, rows: Int, inputs: [UInt8], length: Int) -> [UInt8] {
        precondition(inputs.count == k * length, "inputs must be k × length bytes")
        var outputs = [UInt8](repeating: 0, count: rows * length)
        guard length > 0, rows > 0 else { return outputs }
        var tables = tables
        var inputs = inputs
        inputs.withUnsafeMutableBufferPointer { inBuf in
            outputs.withUnsafeMutableBufferPointer { outBuf in
                var inPtrs = (0..<k).map { Optional(inBuf.baseAddress! + $0 * length) }
                var outPtrs = (0..<rows).map { Optional(outBuf.baseAddress! + $0 * length) }
                ec_encode_data(Int32(length), Int32(k), Int32(rows), &tables, &inPtrs, &outPtrs)
            }
        }
        return outputs
    }
}
