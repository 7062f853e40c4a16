import CartritaEnvelope
import CartritaRuntime
import XCTest

@testable import CartritaAgents

final class LanguageMaestroTests: XCTestCase {
    let agent = LanguageMaestro()

    /// 94 characters, 2 paragraphs, 4 sentences of 6, 6, 6 and 4 words (22), every word of one
    /// syllable ("see": one vowel group, its final e follows a vowel; "play": one group), and
    /// 17 + 18 + 18 + 15 = 68 letters.
    /// Flesch = 206.835 − 1.015 × 22/4 − 84.6 × 22/22 = 116.6525 → 116.65.
    static let paragraph = "The cat sat on the mat. The dog ran to the park! Did the cat see the dog?\n\nCats and dogs play."

    func testStatsOfAKnownParagraph() {
        let outcome = deliver(self.agent, textRequest("text.stats", Self.paragraph))
        XCTAssertEqual(
            outcome.result,
            .map([
                "characters": 94, "words": 22, "sentences": 4, "paragraphs": 2, "syllables": 22,
                "average_word_length": 3.09, "average_sentence_length": 5.5, "flesch_reading_ease": 116.65,
            ]))
    }

    func testSentenceAndWordRules() {
        // An abbreviation followed by a lower-case word does not end a sentence; a decimal point
        // is not a terminator; a closing quote belongs to its sentence; a heading without a
        // period is a sentence of its own; contractions are one word.
        let text = "Heading here\nUse e.g. this one. Pi is 3.14 today! \"Don't stop,\" she said. \"Really?\" Yes.\n\n..."
        let stats = deliver(self.agent, textRequest("text.stats", text)).result
        XCTAssertEqual(int(value(stats, "paragraphs")), 1, "the wordless \"...\" paragraph is not counted")
        // "Heading here Use e.g. this one." is one sentence: the heading's line break is not a
        // paragraph break. Then "Pi is 3.14 today!", "\"Don't stop,\" she said.", "\"Really?\"", "Yes."
        XCTAssertEqual(int(value(stats, "sentences")), 5)
        // heading here use e g this one | pi is 3 14 today | don't stop she said | really | yes
        XCTAssertEqual(int(value(stats, "words")), 7 + 5 + 4 + 1 + 1)
    }

    func testSyllableHeuristic() {
        let expected: [(String, Int)] = [
            ("make", 1), ("table", 2), ("jumped", 1), ("wanted", 2), ("makes", 1), ("boxes", 2), ("pages", 2),
            ("agree", 2), ("goes", 1), ("played", 1), ("yes", 1), ("the", 1), ("reading", 2), ("beautiful", 3),
            ("rhythm", 1), ("2024", 1), ("whale", 1), ("people", 2), ("café", 2), ("don't", 1),
        ]
        for (word, syllables) in expected { XCTAssertEqual(TextDocument.syllables(word), syllables, word) }
    }

    func testKeywordsOrderAndStopWords() {
        let text = "Swift code is fast. Swift code is safe. Rust is fast too. The the the."
        let outcome = deliver(self.agent, textRequest("text.keywords", text, ["count": 4]))
        // Candidates (stop words is, too, the dropped): swift 2, code 2, fast 2, safe 1, rust 1.
        XCTAssertEqual(
            outcome.result,
            .map([
                "keywords": [
                    .map(["word": "code", "count": 2, "score": 0.25]),
                    .map(["word": "fast", "count": 2, "score": 0.25]),
                    .map(["word": "swift", "count": 2, "score": 0.25]),
                    .map(["word": "rust", "count": 1, "score": 0.125]),
                ],
                "candidate_words": 8,
            ]))
        let all = deliver(self.agent, textRequest("text.keywords", text)).result
        guard case .array(let keywords) = value(all, "keywords") else { return XCTFail("\(all as Any)") }
        XCTAssertEqual(keywords.count, 5, "default count is 10, only 5 candidates exist")
        XCTAssertEqual(value(keywords[4], "word"), "safe")
    }

    /// Word counts: solar 4, power 3, panels 2, every other non-stop word 1; highest 4.
    /// Scores (mean of count/4 over the words, stop words 0): S0 9/4/5 = 0.45 + 0.1 lead bonus;
    /// S1 17/4/9 ≈ 0.472; S2 4/4/6 ≈ 0.167; S3 11/4/6 ≈ 0.458; S4 3/4/5 = 0.15.
    static let article =
        "Solar power is growing quickly. Many homes now use solar panels for solar power. "
        + "My neighbour owns a red bicycle. Solar panels turn sunlight into power. The weather was nice yesterday."

    func testSummaryPicksTheBestSentencesInOrder() {
        let three = deliver(self.agent, textRequest("text.summarize", Self.article)).result
        XCTAssertEqual(
            three,
            .map([
                "summary": "Solar power is growing quickly. Many homes now use solar panels for solar power. Solar panels turn sunlight into power.",
                "sentences": [0, 1, 3],
                "sentence_count": 5,
                "truncated": false,
            ]))
        // Without the lead bonus S1 (0.472) would beat S0 (0.45).
        XCTAssertEqual(value(deliver(self.agent, textRequest("text.summarize", Self.article, ["sentences": 1])).result, "sentences"), [0])
        XCTAssertEqual(value(deliver(self.agent, textRequest("text.summarize", Self.article, ["sentences": 2])).result, "sentences"), [0, 1])
        XCTAssertEqual(value(deliver(self.agent, textRequest("text.summarize", Self.article, ["sentences": 100])).result, "sentences"), [0, 1, 2, 3, 4])
    }

    func testAnalyzeCombinesAllThree() {
        let combined = deliver(self.agent, textRequest("text.analyze", Self.article, ["count": 3, "sentences": 2])).result
        XCTAssertEqual(value(combined, "stats"), deliver(self.agent, textRequest("text.stats", Self.article)).result)
        XCTAssertEqual(value(combined, "keywords"), deliver(self.agent, textRequest("text.keywords", Self.article, ["count": 3])).result)
        XCTAssertEqual(value(combined, "summary"), deliver(self.agent, textRequest("text.summarize", Self.article, ["sentences": 2])).result)
        XCTAssertEqual(value(combined, "keywords", "keywords", 0, "word"), "solar")
    }

    func testUnicodeText() {
        let text = "Café über naïve façade. 日本語のテキスト、東京タワー。Straße ist schön! Cafe\u{301} CAFÉ."
        let stats = deliver(self.agent, textRequest("text.stats", text)).result
        // café über naïve façade | 日本語のテキスト 東京タワー | straße ist schön | café café
        XCTAssertEqual(int(value(stats, "sentences")), 4)
        XCTAssertEqual(int(value(stats, "words")), 4 + 2 + 3 + 2)
        XCTAssertEqual(int(value(stats, "characters")), Int64(text.count))
        let keywords = deliver(self.agent, textRequest("text.keywords", text, ["count": 3])).result
        // The three spellings of café (precomposed, decomposed, upper case) are one word; the
        // CJK runs split only at 、 and 。; ties by UTF-8 bytes put "façade" (66 61 c3) before
        // "ist" and the CJK words last.
        XCTAssertEqual(value(keywords, "keywords", 0), .map(["word": "café", "count": 3, "score": .double(3.0 / 11.0)]))
        XCTAssertEqual(value(keywords, "keywords", 1, "word"), "façade")
        let words = TextDocument(text).sentences[1].words.map(\.key)
        XCTAssertEqual(words, ["日本語のテキスト", "東京タワー"])
    }

    func testEmptyAndWordlessTextIsInvalid() {
        assertFailed(deliver(self.agent, textRequest("text.stats", "")), "invalid_input", "empty")
        assertFailed(deliver(self.agent, textRequest("text.summarize", "  \n\t ")), "invalid_input", "no words")
        assertFailed(deliver(self.agent, textRequest("text.keywords", "... !!! ???")), "invalid_input", "no words")
        assertFailed(deliver(self.agent, request("text.stats")), "invalid_input", "no input")
        assertFailed(deliver(self.agent, request("text.stats", data: ["not", "text"])), "invalid_input", "must be a string")
    }

    func testParametersAreChecked() {
        assertFailed(deliver(self.agent, textRequest("text.keywords", "word", ["count": 0])), "invalid_input", "from 1 to 100")
        assertFailed(deliver(self.agent, textRequest("text.keywords", "word", ["count": 101])), "invalid_input", "from 1 to 100")
        assertFailed(deliver(self.agent, textRequest("text.keywords", "word", ["count": 2.5])), "invalid_input", "integer")
        assertFailed(deliver(self.agent, textRequest("text.keywords", "word", ["count": "3"])), "invalid_input", "integer")
        assertFailed(deliver(self.agent, textRequest("text.summarize", "word", ["count": 3])), "invalid_input", "unknown parameter")
        assertFailed(deliver(self.agent, textRequest("text.stats", "word", ["sentences": 3])), "invalid_input", "unknown parameter")
        XCTAssertNotNil(deliver(self.agent, textRequest("text.keywords", "word", ["count": 3.0])).result, "an integral float is an integer")
        assertFailed(deliver(self.agent, textRequest("text.translate", "word")), "unknown_task_type")
    }

    func testSizeLimitAndLargestOutputs() {
        let tooBig = String(repeating: "a", count: LanguageMaestro.maxInputBytes + 1)
        assertFailed(deliver(self.agent, textRequest("text.stats", tooBig)), "invalid_input", "larger than 1 MiB")
        // 1 MiB in one sentence: the summary is clipped to 64 KiB and says so.
        let oneSentence = String(repeating: "word ", count: LanguageMaestro.maxInputBytes / 5)
        let summary = deliver(self.agent, textRequest("text.summarize", oneSentence)).result
        XCTAssertEqual(value(summary, "truncated"), true)
        XCTAssertLessThanOrEqual(string(value(summary, "summary"))?.utf8.count ?? .max, 64 * 1024)
        // 100 keywords, 100 summary sentences: a valid reply well under the envelope limit.
        let many = (0..<2_000).map { "Topic\($0 % 150)x appears here in sentence \($0)." }.joined(separator: " ")
        let result = deliver(self.agent, textRequest("text.analyze", many, ["count": 100, "sentences": 100])).result
        guard case .array(let keywords) = value(result, "keywords", "keywords") else { return XCTFail() }
        XCTAssertEqual(keywords.count, 100)
        XCTAssertLessThan(msgpackUpperBound(result!), 1 << 20)
    }

    func testDeterminism() {
        let first = deliver(self.agent, textRequest("text.analyze", Self.article + " " + Self.paragraph))
        let second = deliver(self.agent, textRequest("text.analyze", Self.article + " " + Self.paragraph))
        XCTAssertEqual(first, second)
    }

    func testInlineTextFile() {
        let file = inlineFile(Array(Self.paragraph.utf8), name: "p.txt", contentType: "text/plain")
        XCTAssertEqual(
            deliver(self.agent, request("text.stats", files: [file])).result,
            deliver(self.agent, textRequest("text.stats", Self.paragraph)).result)
    }

    /// The ASCII fast path and the Character path agree on every count, sentence and word, over
    /// random ASCII text built from the characters the rules care about.
    func testTheASCIIFastPathAgreesWithTheCharacterPath() {
        let pieces = [
            "word", "Word", "e.g.", "don't", "'quoted'", "x'", "42", "3.14", ".", "!", "?", "...", "?!", "\"", ")", "]", "}",
            " ", "  ", "\t", "\n", "\n\n", "\n \n", "\u{0B}", "\u{0C}", ",", ";", "-", "Dr.", "mr.", "I", "a", "'", "''", "ok.\"",
        ]
        var random = SplitMix64(seed: 2026)
        for round in 0..<2_000 {
            var text = ""
            for _ in 0..<(Int(random.next64() % 40)) { text += pieces[Int(random.next64() % UInt64(pieces.count))] }
            XCTAssertTrue(TextDocument.asciiFastPathApplies(text))
            let fast = TextDocument(text)
            let slow = TextDocument(text, asciiFastPath: false)
            XCTAssertEqual(fast.characters, slow.characters, "round \(round): \(text.debugDescription)")
            XCTAssertEqual(fast.paragraphs, slow.paragraphs, "round \(round): \(text.debugDescription)")
            XCTAssertEqual(fast.wordCount, slow.wordCount, "round \(round): \(text.debugDescription)")
            XCTAssertEqual(fast.sentences.map(\.text), slow.sentences.map(\.text), "round \(round): \(text.debugDescription)")
            XCTAssertEqual(
                fast.sentences.map { $0.words.map(\.key) }, slow.sentences.map { $0.words.map(\.key) }, "round \(round): \(text.debugDescription)")
            XCTAssertEqual(
                fast.sentences.map { $0.words.map(\.length) }, slow.sentences.map { $0.words.map(\.length) }, "round \(round)")
        }
        XCTAssertFalse(TextDocument.asciiFastPathApplies("crlf\r\nline"), "CRLF is one Character: the Character path")
        XCTAssertFalse(TextDocument.asciiFastPathApplies("café"))
    }

    /// The byte path of the syllable count agrees with the Character path on every ASCII key.
    func testASCIISyllablesAgreeWithTheCharacterPath() {
        var words = ["", "a", "e", "y", "yes", "make", "table", "jumped", "wanted", "makes", "boxes", "agree", "goes", "played", "the",
            "every", "business", "don't", "42", "rhythm", "queue", "lle", "ble", "ed", "es", String(repeating: "ab", count: 40)]
        var random = SplitMix64(seed: 7)
        let alphabet = Array("aeiouybcdlstxzgh'0".utf8)
        for _ in 0..<20_000 {
            words.append(String(decoding: (0..<(Int(random.next64() % 12))).map { _ in alphabet[Int(random.next64() % UInt64(alphabet.count))] }, as: UTF8.self))
        }
        for word in words {
            XCTAssertEqual(TextDocument.syllables(word), TextDocument.characterSyllables(word), word)
        }
    }

    /// The keyword candidates' byte test for a letter agrees with Character.isLetter on every
    /// ASCII byte and on words mixing ASCII with other scripts.
    func testTheLetterTestOnBytesAgreesWithCharacters() {
        var words = (0..<128).map { String(UnicodeScalar(UInt8($0))) } + ["", "42", "4é", "é", "12ß3", "日本", "١٢٣", "x1", "_-_", "Ωmega", "9\u{301}"]
        var random = SplitMix64(seed: 11)
        let pieces = ["a", "Z", "0", "9", "_", "-", "'", "é", "ß", "日", "١", "\u{301}", " ", "@", "[", "`", "{"]
        for _ in 0..<5_000 {
            words.append((0..<Int(random.next64() % 6)).map { _ in pieces[Int(random.next64() % UInt64(pieces.count))] }.joined())
        }
        for word in words {
            XCTAssertEqual(LanguageMaestro.hasLetter(word), word.contains(where: \.isLetter), word.debugDescription)
        }
    }

    /// The ASCII path counts keywords and syllables per distinct word by slot; the Character
    /// path by String key, as it always did. Both give the same answers, byte for byte, on
    /// random ASCII text with repeated words, stop words, numbers and apostrophes.
    func testCountingBySlotAgreesWithCountingByKey() {
        let pieces = [
            "word", "Word", "WORD", "the", "The", "don't", "Don't", "42", "x1", "ledger", "Ledger", "replay", "a", "I", "it's",
            ".", "!", "?", "...", " ", "  ", "\n", "\n\n", ",", "'", "e.g.", String(repeating: "long", count: 40),
        ]
        var random = SplitMix64(seed: 4242)
        var compared = 0
        for round in 0..<1_500 {
            var text = ""
            for _ in 0..<(Int(random.next64() % 60)) { text += pieces[Int(random.next64() % UInt64(pieces.count))] + " " }
            let fast = TextDocument(text)
            let slow = TextDocument(text, asciiFastPath: false)
            guard fast.wordCount > 0 else { continue }
            XCTAssertTrue(fast.isInterned)
            XCTAssertFalse(slow.isInterned)
            XCTAssertEqual(Set(fast.distinctKeys).count, fast.distinctKeys.count, "one slot per key")
            for type in ["text.stats", "text.keywords", "text.summarize", "text.analyze"] {
                let count = 1 + Int(random.next64() % 100)
                let sentences = 1 + Int(random.next64() % 5)
                XCTAssertEqual(
                    LanguageMaestro.result(type, fast, keywordCount: count, summaryLength: sentences),
                    LanguageMaestro.result(type, slow, keywordCount: count, summaryLength: sentences),
                    "round \(round) \(type): \(text.debugDescription)")
            }
            compared += 1
        }
        XCTAssertGreaterThan(compared, 1_000)
    }

    /// The interner numbers keys (lower-cased) as a Dictionary would, in order of first
    /// appearance, through its growth and probing, for empty keys and keys that share prefixes.
    func testKeyInternerNumbersKeysLikeADictionary() {
        var interner = KeyInterner()
        var reference: [[UInt8]: Int32] = [:]
        var random = SplitMix64(seed: 5)
        let alphabet = Array("abcAB'0".utf8)
        for _ in 0..<20_000 {
            let spelling = (0..<Int(random.next64() % 5)).map { _ in alphabet[Int(random.next64() % UInt64(alphabet.count))] }
            let key = Array(String(decoding: spelling, as: UTF8.self).lowercased().utf8)
            let (slot, isNew) = spelling.withUnsafeBufferPointer { interner.slot(of: $0, hash: KeyInterner.hash($0)) }
            if let known = reference[key] {
                XCTAssertEqual(slot, known)
                XCTAssertFalse(isNew)
            } else {
                XCTAssertEqual(slot, Int32(reference.count))
                XCTAssertTrue(isNew)
                reference[key] = slot
            }
        }
        XCTAssertEqual(interner.count, reference.count)
    }
}
