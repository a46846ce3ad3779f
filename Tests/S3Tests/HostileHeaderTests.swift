import Foundation
import Security
import Testing

@testable import S3

/// Headers and bodies reach the parsers before any signature check, from anyone: absurd numbers
/// and hostile XML are refused, never trapped on.
@Suite struct HostileHeaderTests {
    @Test func httpDatesParse() {
        #expect(HTTPDate.parse("Wed, 21 Oct 2015 07:28:00 GMT") == 1_445_412_480)
        #expect(HTTPDate.parse("Thu, 01 Jan 1970 00:00:00 GMT") == 0)
        #expect(HTTPDate.parse(HTTPDate.rfc7231(epochSeconds: 1_700_000_000)) == 1_700_000_000)
    }

    @Test(arguments: [
        "Wed, 21 Oct 2015 9999999999999999:00:00 GMT",
        "Wed, 21 Oct 2015 07:9223372036854775807:00 GMT",
        "Wed, 21 Oct 2015 07:28:9223372036854775807 GMT",
        "Wed, 9223372036854775807 Oct 2015 07:28:00 GMT",
        "Wed, 21 Oct 9223372036854775807 07:28:00 GMT",
        "Wed, 21 Oct -9223372036854775807 07:28:00 GMT",
        "Wed, 21 Oct 2015 -1:28:00 GMT",
        "Wed, 21 Oct 2015 +7:28:00 GMT",
        "Wed, 21 Oct 2015 24:00:00 GMT",
        "Wed, 32 Oct 2015 07:28:00 GMT",
        "Wed, 21 Oct 2015 07:28 GMT",
        "Wed, 21 Oct 2015 07::00 GMT",
        "Wed, 21 Oct 2015 07:28:00:00 GMT",
        "",
    ])
    func absurdHTTPDatesAreRefused(s: String) {
        #expect(HTTPDate.parse(s) == nil)
    }

    @Test(arguments: ["99999999T000000Z", "2015102 T072800Z", "20151021T-10000Z", "20151021T992800Z", "+0151021T072800Z"])
    func absurdAmzDatesAreRefused(s: String) {
        #expect(SigV4.epochSeconds(s) == nil)
    }

    /// The request that killed a node: an unsigned Authorization with a hostile Date header.
    @Test func hostileDateHeaderIsRefusedBeforeTheSignature() {
        let r = SignedRequest(
            method: "GET", rawPath: "/", query: [],
            headers: [
                "host": "127.0.0.1:9000", "date": "Wed, 21 Oct 2015 9999999999999999:00:00 GMT",
                "authorization": "AWS4-HMAC-SHA256 Credential=x,SignedHeaders=host,Signature=x",
            ])
        #expect(throws: S3Error.self) { try SigV4(credentials: FixedKeys(), region: "us-east-1", nowMs: 1_700_000_000_000).verify(r) }
    }

    @Test(arguments: ["if-modified-since", "if-unmodified-since"])
    func hostileConditionalDatesAreIgnored(header: String) {
        let h = [header: "Wed, 21 Oct 2015 07:28:9999999999999999 GMT"]
        #expect(Conditions.evaluate(h, etag: "e", lastModifiedMs: 1_000, isRead: true) == nil)
    }

    @Test func s3BodiesStillParse() throws {
        let body = Array("<Delete><Quiet>true</Quiet><Object><Key>a</Key></Object><Object><Key>b</Key></Object></Delete>".utf8)
        let root = try #require(XMLNode.parse(body))
        #expect(root.all("Object").compactMap { $0.child("Key")?.text } == ["a", "b"])
        let parts = (1...10_000).map { "<Part><PartNumber>\($0)</PartNumber><ETag>\"e\"</ETag></Part>" }.joined()
        #expect(XMLNode.parse(Array("<CompleteMultipartUpload>\(parts)</CompleteMultipartUpload>".utf8))?.children.count == 10_000)
    }

    /// 200,000 nested elements (3.4 MB, under the 4 MiB body cap) once killed the node.
    @Test func deeplyNestedXMLIsRefused() {
        let n = 200_000
        let doc = "<Delete>" + String(repeating: "<a>", count: n) + String(repeating: "</a>", count: n) + "</Delete>"
        #expect(XMLNode.parse(Array(doc.utf8)) == nil)
        let ok = String(repeating: "<a>", count: XMLNode.maxDepth) + String(repeating: "</a>", count: XMLNode.maxDepth)
        #expect(XMLNode.parse(Array(ok.utf8)) != nil)
        let deep = String(repeating: "<a>", count: XMLNode.maxDepth + 1) + String(repeating: "</a>", count: XMLNode.maxDepth + 1)
        #expect(XMLNode.parse(Array(deep.utf8)) == nil)
    }

    /// Found by `tools/fuzz xml`: invalid UTF-8 in an element name trapped inside XMLParser.
    @Test func invalidUTF8InANameIsRefused() {
        let body: [UInt8] = Array("<Com".utf8) + [0xC4] + Array("pleteMultipartUpload><Part><PartNumber>1</PartNumber></Part></CompleteMultipartUpload>".utf8)
        #expect(XMLNode.parse(body) == nil)
        #expect(XMLNode.parse(Array("<Delete><Object><Key>caf\u{e9}</Key></Object></Delete>".utf8))?.child("Object")?.child("Key")?.text == "caf\u{e9}")
    }

    /// Found by `tools/fuzz xml`: a processing instruction without data made XMLParser strlen(NULL).
    @Test func processingInstructionsAreRefused() {
        #expect(XMLNode.parse(Array("<?l?>?<?~>".utf8)) == nil)
        #expect(XMLNode.parse(Array("<Delete><?pi?><Object><Key>k</Key></Object></Delete>".utf8)) == nil)
        #expect(XMLNode.parse(Array("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Delete><Object><Key>k</Key></Object></Delete>".utf8))?.name == "Delete")
    }

    /// What stock clients send parses as it did through XMLParser (namespaces, declarations,
    /// entities, CDATA, comments), and what is not well-formed is refused.
    @Test func theBodyParserAcceptsWhatClientsSendAndNothingMalformed() throws {
        let doc =
            "\u{FEFF}<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<!-- c -->\n<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
            + "<Object><Key>a&amp;b &lt;&#x263A;&#65;&quot;&apos;&gt;</Key></Object><Object><Key><![CDATA[x<y>&z]]></Key></Object>"
            + "<!-- between --><Object><Key>l1\r\nl2\rl3&#13;</Key><VersionId/></Object><Quiet>true</Quiet></Delete >\n"
        let root = try #require(XMLNode.parse(Array(doc.utf8)))
        #expect(root.name == "Delete")
        #expect(root.all("Object").compactMap { $0.child("Key")?.text } == ["a&b <\u{263A}A\"'>", "x<y>&z", "l1\nl2\nl3\r"])
        #expect(root.all("Object")[2].child("VersionId")?.text == "")
        #expect(root.child("Quiet")?.text == "true")
        #expect(XMLNode.parse(Array("<s3:Delete a='1' b = \"2\"><s3:Key>k</s3:Key></s3:Delete>".utf8))?.child("s3:Key")?.text == "k")
        for bad in [
            "", "  ", "<Delete>", "<Delete></Quiet>", "<Delete></Delete><Delete></Delete>", "<Delete></Delete>trailing",
            "text<Delete></Delete>", "<Delete><Key>a&b</Key></Delete>", "<Delete><Key>&#0;</Key></Delete>",
            "<Delete><Key>&#xD800;</Key></Delete>", "<Delete><Key>&#99999999999;</Key></Delete>", "<Delete a=1></Delete>",
            "<Delete a=\"<\"></Delete>", "<Delete a=\"1\"b=\"2\"></Delete>", "<Delete><!-- a -- b --></Delete>",
            "<Delete><![CDATA[x</Delete>", "<1a></1a>", "<Delete><Key>k</Key", "<Delete/><!-- unclosed",
        ] {
            #expect(XMLNode.parse(Array(bad.utf8)) == nil, "accepted \(bad.debugDescription)")
        }
    }

    @Test func tooManyElementsAreRefused() {
        let doc = "<Delete>" + String(repeating: "<Object><Key>k</Key></Object>", count: XMLNode.maxElements / 2) + "</Delete>"
        #expect(XMLNode.parse(Array(doc.utf8)) == nil)
    }

    @Test(arguments: [
        "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;&lol;\">]><Delete><Object><Key>&lol2;</Key></Object></Delete>",
        "<?xml version=\"1.0\"?><!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><Delete><Object><Key>&x;</Key></Object></Delete>",
        "<Delete><Object><Key>&undefined;</Key></Object></Delete>",
    ])
    func documentTypesAndEntitiesAreRefused(doc: String) {
        #expect(XMLNode.parse(Array(doc.utf8)) == nil)
    }
}

/// The three aws-chunked variants: signed without trailers, signed with signed trailers, unsigned
/// with trailers. Each accepts only its own shape, and the trailer section is bounded.
@Suite struct AWSChunkedTrailerTests {
    let signer = Principal(
        accessKey: "AK", signingKey: Array(repeating: 7, count: 32), amzDate: "20261202T000000Z",
        scope: "20261202/us-east-1/s3/aws4_request", seedSignature: String(repeating: "a", count: 64))
    static let emptyHash = Digest.sha256([UInt8]()).hex

    func hmac(_ s: String) -> String { Digest.hmacSHA256(key: signer.signingKey, Array(s.utf8)).hex }

    /// A signed body of one data chunk and the final chunk, then `trailers` (already signed or not).
    func signedBody(_ data: String, trailers: [String], trailerSignature: ((String) -> String)? = nil) -> [UInt8] {
        let s1 = hmac(
            "AWS4-HMAC-SHA256-PAYLOAD\n\(signer.amzDate)\n\(signer.scope)\n\(signer.seedSignature)\n\(Self.emptyHash)\n\(Digest.sha256(Array(data.utf8)).hex)")
        let s0 = hmac("AWS4-HMAC-SHA256-PAYLOAD\n\(signer.amzDate)\n\(signer.scope)\n\(s1)\n\(Self.emptyHash)\n\(Self.emptyHash)")
        var text = "\(String(data.utf8.count, radix: 16));chunk-signature=\(s1)\r\n\(data)\r\n0;chunk-signature=\(s0)\r\n"
        for t in trailers { text += t + "\r\n" }
        if let trailerSignature {
            let canonical = trailers.map { $0.replacingOccurrences(of: ": ", with: ":") + "\n" }.joined()
            text +=
                "x-amz-trailer-signature:\(trailerSignature(hmac("AWS4-HMAC-SHA256-TRAILER\n\(signer.amzDate)\n\(signer.scope)\n\(s0)\n\(Digest.sha256(Array(canonical.utf8)).hex)")))\r\n"
        }
        return Array((text + "\r\n").utf8)
    }

    func decode(_ body: [UInt8], signed: Bool, withTrailers: Bool) throws(S3Error) -> (out: [UInt8], trailers: [String: String]) {
        var d = AWSChunkedDecoder(signer: signed ? signer : nil, withTrailers: withTrailers)
        let out = try d.feed(body[...])
        #expect(d.isDone)
        return (out, d.trailers)
    }

    let crc = "x-amz-checksum-crc32:NhCmhg=="

    @Test func signedTrailersMustBeSigned() throws {
        let ok = try decode(signedBody("hello", trailers: [crc], trailerSignature: { $0 }), signed: true, withTrailers: true)
        #expect(ok.out == Array("hello".utf8))
        #expect(ok.trailers["x-amz-checksum-crc32"] == "NhCmhg==")
        #expect(throws: S3Error.signatureMismatch()) {
            try decode(signedBody("hello", trailers: [crc], trailerSignature: { String($0.reversed()) }), signed: true, withTrailers: true)
        }
        #expect(throws: S3Error(400, "IncompleteBody", "malformed aws-chunked body: x-amz-trailer-signature missing")) {
            try decode(signedBody("hello", trailers: [crc]), signed: true, withTrailers: true)
        }
    }

    @Test func trailersAreRefusedWhereTheVariantHasNone() throws {
        #expect(try decode(signedBody("hello", trailers: []), signed: true, withTrailers: false).out == Array("hello".utf8))
        #expect(throws: S3Error.self) { try decode(signedBody("hello", trailers: [crc]), signed: true, withTrailers: false) }
    }

    @Test func trailerSectionIsBounded() throws {
        let many = Array("5\r\nhello\r\n0\r\n".utf8) + (0..<10_000).flatMap { Array("x-amz-meta-\($0):v\r\n".utf8) } + Array("\r\n".utf8)
        #expect(throws: S3Error.self) { try decode(many, signed: false, withTrailers: true) }
        let long =
            Array("5\r\nhello\r\n0\r\n".utf8) + (0..<8).flatMap { _ in Array("x-amz-meta-a:\(String(repeating: "v", count: 4000))\r\n".utf8) }
            + Array("\r\n".utf8)
        #expect(throws: S3Error.self) { try decode(long, signed: false, withTrailers: true) }
    }
}
