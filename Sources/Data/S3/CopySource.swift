/// The object a copy reads, from `x-amz-copy-source`: `[/]bucket/key[?versionId=V]`, the bucket
/// and key percent-encoded. Authorization and the copy itself both read this one value, so the
/// bucket whose rights are checked is always the bucket that is read.
struct CopySource: Equatable {
    var bucket: String
    var key: String
    /// The version asked for; only `null` (an object written without versioning) exists here.
    var versionID: String?

    init(bucket: String, key: String, versionID: String? = nil) {
        self.bucket = bucket; self.key = key; self.versionID = versionID
    }

    /// The query is split off before decoding (a `?` in a key arrives as `%3F`); one leading `/`
    /// is dropped after it; the bucket ends at the first `/` of what is left.
    init(header: String) throws(S3Error) {
        let invalid = S3Error.invalidArgument("Copy Source must mention the source bucket and key: sourcebucket/sourcekey")
        let raw = header.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)
        guard var path = SigV4.percentDecode(raw[0]) else { throw invalid }
        if path.hasPrefix("/") { path.removeFirst() }
        guard let slash = path.firstIndex(of: "/"), slash != path.startIndex, path.index(after: slash) != path.endIndex else { throw invalid }
        bucket = String(path[..<slash])
        key = String(path[path.index(after: slash)...])
        guard !key.utf8.contains(0) else { throw S3Error.invalidArgument("Object key must not contain a NUL character") }
        versionID = nil
        if raw.count > 1 {
            let query = raw[1].split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard query.count == 2, query[0] == "versionId", !query[1].contains("&"), let v = SigV4.percentDecode(query[1]), !v.isEmpty else {
                throw S3Error.invalidArgument("x-amz-copy-source takes only ?versionId=VERSION after the key")
            }
            versionID = v
        }
    }

    /// Refuses a version other than `null`: objects here have no other versions.
    func checkVersion() throws(S3Error) {
        guard let v = versionID, v != "null" else { return }
        throw S3Error(404, "NoSuchVersion", "The specified version does not exist.")
    }
}
