import Testing

@testable import S3

/// `x-amz-copy-source` read one way for authorization and for the copy: every spelling a client
/// or an attacker could send names exactly one bucket, or is refused.
@Suite struct CopySourceTests {
    @Test(
        arguments: [
            ("abucket/secret.txt", "abucket", "secret.txt", nil),
            ("/abucket/secret.txt", "abucket", "secret.txt", nil),
            ("%2Fabucket/secret.txt", "abucket", "secret.txt", nil),
            ("abucket%2Fsecret.txt", "abucket", "secret.txt", nil),
            ("/abucket/dir/a%3Fb%20c", "abucket", "dir/a?b c", nil),
            ("/abucket/secret.txt?versionId=null", "abucket", "secret.txt", "null"),
            ("/abucket//secret.txt", "abucket", "/secret.txt", nil),
            ("/abucket/../bbucket/x", "abucket", "../bbucket/x", nil),
            ("/%61bucket/x+y", "abucket", "x+y", nil),
            ("ABucket/x", "ABucket", "x", nil),
        ] as [(String, String, String, String?)])
    func spellingsNameOneBucket(header: String, bucket: String, key: String, version: String?) throws {
        #expect(try CopySource(header: header) == CopySource(bucket: bucket, key: key, versionID: version))
    }

    /// A leading `?`, a doubled leading slash, a missing key or bucket, a bad escape or another
    /// query: 400 InvalidArgument, never a guess at which bucket was meant.
    @Test(arguments: [
        "?/abucket/secret.txt", "//abucket/secret.txt", "%2F%2Fabucket/x", "abucket", "abucket/", "/", "", "/abucket%2F",
        "abucket/x%2", "abucket/x%+5", "abucket/x%00", "abucket/x?versionId=", "abucket/x?acl", "abucket/x?versionId=1&x=2",
    ])
    func malformedSourcesAreRefused(header: String) {
        #expect(throws: S3Error.self) { try CopySource(header: header) }
        do { _ = try CopySource(header: header) } catch { #expect(error.status == 400 && error.code == "InvalidArgument", "\(header)") }
    }

    @Test func onlyTheNullVersionExists() throws {
        try CopySource(header: "a/b?versionId=null").checkVersion()
        try CopySource(header: "a/b").checkVersion()
        #expect(throws: S3Error(404, "NoSuchVersion", "The specified version does not exist.")) {
            try CopySource(header: "a/b?versionId=3HL4kqtJlcpXroDTDmJ%2BrmSpXd3dIbrHY").checkVersion()
        }
    }
}
