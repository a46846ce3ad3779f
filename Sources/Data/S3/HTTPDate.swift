/// Dates as S3 speaks them: RFC 7231 (Last-Modified), ISO 8601 (listings), SigV4's basic format.
enum HTTPDate {
    static let days = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"]
    static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    /// Howard Hinnant's days-from-civil algorithm.
    static func daysFromCivil(_ y0: Int64, _ m: Int64, _ d: Int64) -> Int64 {
        let y = m <= 2 ? y0 - 1 : y0
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func civil(_ days: Int64) -> (y: Int64, m: Int64, d: Int64) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (yoe + era * 400 + (m <= 2 ? 1 : 0), m, d)
    }

    private static func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }

    /// "Wed, 21 Oct 2015 07:28:00 GMT"
    static func rfc7231(epochSeconds t: Int64) -> String {
        let days = t >= 0 ? t / 86_400 : (t - 86_399) / 86_400
        let (y, m, d) = civil(days)
        let s = t - days * 86_400
        let wd = days % 7 < 0 ? days % 7 + 7 : days % 7
        return "\(self.days[Int(wd)]), \(two(d)) \(months[Int(m - 1)]) \(y) \(two(s / 3600)):\(two(s / 60 % 60)):\(two(s % 60)) GMT"
    }

    /// "2015-10-21T07:28:00.123Z"
    static func iso8601(epochMs ms: Int64) -> String {
        let t = ms / 1000
        let days = t / 86_400
        let (y, m, d) = civil(days)
        let s = t - days * 86_400
        let frac = String(ms % 1000).leftPadded(to: 3)
        return "\(y)-\(two(m))-\(two(d))T\(two(s / 3600)):\(two(s / 60 % 60)):\(two(s % 60)).\(frac)Z"
    }

    static func amzDate(epochSeconds t: Int64) -> String {
        let days = t / 86_400
        let (y, m, d) = civil(days)
        let s = t - days * 86_400
        return "\(y)\(two(m))\(two(d))T\(two(s / 3600))\(two(s / 60 % 60))\(two(s % 60))Z"
    }

    /// Parses "Wed, 21 Oct 2015 07:28:00 GMT" (the only form S3 clients send). Every field is
    /// range-checked before arithmetic: the header comes from anyone, before any signature check.
    static func parse(_ s: String) -> Int64? {
        let parts = s.split(separator: " ")
        guard parts.count == 6, parts[5] == "GMT", let mi = months.firstIndex(of: String(parts[2])),
            let d = number(parts[1], 1...31), let y = number(parts[3], 1...9999)
        else { return nil }
        let hms = parts[4].split(separator: ":", omittingEmptySubsequences: false)
        guard hms.count == 3, let h = number(hms[0], 0...23), let m = number(hms[1], 0...59), let sec = number(hms[2], 0...60) else { return nil }
        return daysFromCivil(y, Int64(mi + 1), d) * 86_400 + h * 3600 + m * 60 + sec
    }

    /// Decimal digits only (no sign), at most four of them, within `range`.
    static func number(_ s: Substring, _ range: ClosedRange<Int64>) -> Int64? {
        guard !s.isEmpty, s.utf8.count <= 4, s.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let v = Int64(s), range.contains(v) else { return nil }
        return v
    }
}
