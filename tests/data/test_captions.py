"""Caption library: every format from realistic snippets, cleaning, alignment, writers, errors."""

from __future__ import annotations

import json
import pickle

import pytest

from tvts_data.captions import (
    CAPTION_PARSERS,
    CaptionError,
    Timing,
    Word,
    align_clean_transcript,
    caption_language_from_name,
    caption_track_from_name,
    clean_words,
    infer_format,
    interpolate_by_chars,
    parse_caption_file,
    parse_caption_text,
    write_json3,
    write_srt,
    write_srv1,
    write_srv3,
    write_vtt_auto,
    write_vtt_plain,
    write_yttemporal,
)
from tvts_data.captions.align import align_words
from tvts_data.captions.base import finish_words

approx = pytest.approx


def texts(transcript_or_words) -> list[str]:
    words = getattr(transcript_or_words, "words", transcript_or_words)
    return [w.text for w in words]


def starts(transcript_or_words) -> list[float]:
    words = getattr(transcript_or_words, "words", transcript_or_words)
    return [w.start for w in words]


# --- YouTube auto-caption VTT (triplicated) ------------------------------------------------------

# "\x20" marks YouTube's whitespace-only lines so that no editor can trim them away.
YOUTUBE_AUTO_VTT = """\
WEBVTT
Kind: captions
Language: en

00:00:00.000 --> 00:00:02.310 align:start position:0%
\x20
guys<00:00:00.179><c> this</c><00:00:00.359><c> is</c><00:00:00.570><c> my</c><00:00:01.020><c> kitchen</c>

00:00:02.310 --> 00:00:02.320 align:start position:0%
guys this is my kitchen
\x20

00:00:02.320 --> 00:00:04.550 align:start position:0%
guys this is my kitchen
and<00:00:02.639><c> today</c><00:00:02.879><c> we're</c><00:00:03.360><c> making</c>

00:00:04.550 --> 00:00:04.560 align:start position:0%
and today we're making
\x20

00:00:04.560 --> 00:00:06.000 align:start position:0%
and today we're making
pancakes

00:00:06.000 --> 00:00:06.010 align:start position:0%
pancakes
\x20
"""
AUTO_VTT_WORDS = ["guys", "this", "is", "my", "kitchen", "and", "today", "we're", "making", "pancakes"]
AUTO_VTT_STARTS = [0.0, 0.179, 0.359, 0.570, 1.020, 2.320, 2.639, 2.879, 3.360, 4.560]
AUTO_VTT_ENDS = [0.179, 0.359, 0.570, 1.020, 1.5, 2.639, 2.879, 3.360, 3.8, 6.0]


def test_youtube_auto_vtt_collapses_triplicated_lines_to_timed_words():
    transcript = parse_caption_text(YOUTUBE_AUTO_VTT, "vtt")
    assert texts(transcript) == AUTO_VTT_WORDS
    assert starts(transcript) == approx(AUTO_VTT_STARTS)
    assert transcript.timing is Timing.WORD and str(transcript.timing) == "word"
    assert transcript.language == "en"


def test_youtube_auto_vtt_word_ends_are_next_start_capped_by_cue_end():
    words = parse_caption_text(YOUTUBE_AUTO_VTT, "vtt").words
    assert words[0].end == approx(0.179)
    assert words[4].end == approx(2.310)  # "kitchen": last of its line, build-up cue ends at 2.310
    assert words[-1].end == approx(6.000)  # single-word line "pancakes" spans its cue


def test_youtube_auto_vtt_survives_trimmed_whitespace_lines():
    trimmed = "\n".join(line.rstrip() for line in YOUTUBE_AUTO_VTT.splitlines())
    transcript = parse_caption_text(trimmed, "vtt")
    assert texts(transcript) == AUTO_VTT_WORDS
    assert starts(transcript) == approx(AUTO_VTT_STARTS)


def test_write_vtt_auto_reproduces_youtube_layout():
    words = [Word(*w) for w in zip(AUTO_VTT_WORDS, AUTO_VTT_STARTS, AUTO_VTT_ENDS)]
    # line breaks after 5 words and at the 0.76 s pause before "pancakes"
    assert write_vtt_auto(words, segment_gap=0.5, words_per_line=5) == YOUTUBE_AUTO_VTT


def test_auto_vtt_keeps_a_single_word_line_that_repeats_the_previous_line():
    words = [Word("yeah", 0.0, 0.5), Word("yeah", 2.5, 3.0), Word("right", 5.0, 5.2), Word("now", 5.3, 5.6)]
    vtt = write_vtt_auto(words, segment_gap=1.0)  # lines "yeah" and "yeah" carry no inline tags
    assert "\nyeah\nyeah\n" in vtt  # build-up cue: carried line, then the new untagged line
    transcript = parse_caption_text(vtt, "vtt")
    assert texts(transcript) == ["yeah", "yeah", "right", "now"]
    assert starts(transcript) == approx([0.0, 2.5, 5.0, 5.3])
    assert transcript.timing is Timing.WORD


# --- json3 ---------------------------------------------------------------------------------------

AUTO_JSON3 = json.dumps({
    "wireMagic": "pb3",
    "pens": [{}],
    "wsWinStyles": [{}, {"mhModeHint": 2, "juJustifCode": 0, "sdScrollDir": 3}],
    "events": [
        {"tStartMs": 0, "dDurationMs": 12000, "id": 1, "wpWinPosId": 1, "wsWinStyleId": 1},
        {"tStartMs": 160, "dDurationMs": 4400, "wWinId": 1, "segs": [
            {"utf8": "hello", "acAsrConf": 0},
            {"utf8": " everyone", "tOffsetMs": 320, "acAsrConf": 0},
            {"utf8": " it&#39;s", "tOffsetMs": 1040, "acAsrConf": 0}]},
        {"tStartMs": 2550, "dDurationMs": 2010, "wWinId": 1, "aAppend": 1, "segs": [{"utf8": "\n"}]},
        {"tStartMs": 2560, "dDurationMs": 4000, "wWinId": 1, "segs": [{"utf8": "[Music]"}]},
        {"tStartMs": 4560, "dDurationMs": 3000, "wWinId": 1, "aAppend": 1, "segs": [{"utf8": "\n"}]},
        {"tStartMs": 4570, "dDurationMs": 3000, "wWinId": 1, "segs": [
            {"utf8": ">>"}, {"utf8": " so", "tOffsetMs": 200}, {"utf8": " "},
            {"utf8": " good", "tOffsetMs": 700}]},
    ],
})


def test_json3_auto_captions_word_starts_from_offsets():
    transcript = parse_caption_text(AUTO_JSON3, "json3")
    assert texts(transcript) == ["hello", "everyone", "it's", "so", "good"]
    assert starts(transcript) == approx([0.160, 0.480, 1.200, 4.770, 5.270])
    assert transcript.timing is Timing.WORD


def test_json3_overlapping_events_cap_word_ends_at_next_start():
    words = parse_caption_text(AUTO_JSON3, "json3").words
    # The first event lasts until 4.56 s but the next event starts at 2.56 s.
    assert words[2].end == approx(2.560)
    assert words[-1].end == approx(7.570)  # last word: end of its event
    assert all(a.end <= b.start for a, b in zip(words, words[1:]))


def test_json3_small_backward_jitter_between_overlapping_events_is_sorted():
    events = {"events": [
        {"tStartMs": 0, "dDurationMs": 3000, "segs": [{"utf8": "one"}, {"utf8": " two", "tOffsetMs": 2600}]},
        {"tStartMs": 2500, "dDurationMs": 2000, "segs": [{"utf8": "three"}, {"utf8": " four", "tOffsetMs": 500}]},
    ]}
    words = parse_caption_text(json.dumps(events), "json3").words
    assert texts(words) == ["one", "three", "two", "four"]
    assert starts(words) == sorted(starts(words))


def test_json3_manual_captions_are_interpolated_by_characters():
    manual = {"events": [
        {"tStartMs": 1000, "dDurationMs": 3000, "segs": [{"utf8": "Hello there, friends."}]},
        {"tStartMs": 4000, "dDurationMs": 2000, "segs": [{"utf8": "Welcome back."}]},
    ]}
    transcript = parse_caption_text(json.dumps(manual), "json3")
    assert transcript.timing is Timing.INTERPOLATED
    assert texts(transcript) == ["Hello", "there,", "friends.", "Welcome", "back."]
    # chars before each word / total chars (incl. one space per gap): 0/21, 6/21, 13/21; 0/13, 8/13
    assert starts(transcript) == approx([1.0, 1 + 3 * 6 / 21, 1 + 3 * 13 / 21, 4.0, 4 + 2 * 8 / 13])


# --- srv3 / srv1 ---------------------------------------------------------------------------------

AUTO_SRV3 = """\
<?xml version="1.0" encoding="utf-8" ?><timedtext format="3">
<head>
<ws id="0"/>
<wp id="0"/>
</head>
<body>
<w t="0" id="1" wp="1" ws="1"/>
<p t="15519" d="4241" w="1"><s ac="0">for</s><s t="281" ac="0"> years</s><s t="800" ac="0"> people</s></p>
<p t="17750" d="2010" w="1" a="1">
</p>
<p t="17760" d="4000" w="1"><s ac="0">have</s><s t="480" ac="0"> asked</s></p>
</body>
</timedtext>
"""


def test_srv3_word_offsets_from_paragraph_start():
    transcript = parse_caption_text(AUTO_SRV3, "srv3")
    assert texts(transcript) == ["for", "years", "people", "have", "asked"]
    assert starts(transcript) == approx([15.519, 15.800, 16.319, 17.760, 18.240])
    assert transcript.words[2].end == approx(17.760)
    assert transcript.words[-1].end == approx(21.760)
    assert transcript.timing is Timing.WORD


def test_srv3_paragraph_without_spans_is_interpolated_and_br_splits_words():
    srv3 = '<timedtext format="3"><body><p t="1000" d="2000">Hi<br/>there</p></body></timedtext>'
    transcript = parse_caption_text(srv3, "srv3")
    assert transcript.timing is Timing.INTERPOLATED
    assert texts(transcript) == ["Hi", "there"]
    assert starts(transcript) == approx([1.0, 1.0 + 2.0 * 3 / 8])


def test_srv1_double_escaped_text_and_segment_timing():
    srv1 = '<transcript><text start="0.5" dur="2">it&amp;#39;s fine</text></transcript>'
    transcript = parse_caption_text(srv1, "srv1")
    assert texts(transcript) == ["it's", "fine"]
    assert starts(transcript) == approx([0.5, 0.5 + 2 * 5 / 9])
    assert transcript.timing is Timing.INTERPOLATED


# --- plain VTT and SRT ---------------------------------------------------------------------------

PLAIN_VTT = """\
WEBVTT - recorded by hand

STYLE
::cue { color: yellow }

NOTE written by a person,
over two lines

intro
00:01.000 --> 00:04.000 line:90%
<v Ann>Hello big world

NOTE a comment between cues,
not speech

2
00:04.000 --> 00:06.000
Hello big world
and more
"""


def test_plain_vtt_interpolates_cues_and_drops_the_carried_line():
    transcript = parse_caption_text(PLAIN_VTT, "vtt")
    assert texts(transcript) == ["Hello", "big", "world", "and", "more"]
    # "Hello big world": 15 chars over 3 s; "and more": 8 chars over 2 s.
    assert starts(transcript) == approx([1.0, 1 + 3 * 6 / 15, 1 + 3 * 10 / 15, 4.0, 4 + 2 * 4 / 8])
    assert transcript.timing is Timing.INTERPOLATED
    assert transcript.language is None


def test_plain_vtt_keeps_a_repeat_that_is_not_the_previous_last_line():
    vtt = "WEBVTT\n\n00:00:01.000 --> 00:00:02.000\nno no\nstop\n\n00:00:02.000 --> 00:00:03.000\nno no\n"
    assert texts(parse_caption_text(vtt, "vtt")) == ["no", "no", "stop", "no", "no"]


SRT = """\
1
00:00:01,000 --> 00:00:03,000
<i>- Where are you going?</i>

2
00:00:03,500 --> 00:00:05,000
[door slams]
I said, where?
"""


def test_srt_interpolates_by_characters_and_drops_tags_and_dashes():
    transcript = parse_caption_text(SRT, "srt")
    assert texts(transcript) == ["Where", "are", "you", "going?", "I", "said,", "where?"]
    # cue 1: "- Where are you going?" 22 chars over 2 s; cue 2: "[door slams] I said, where?" 27 over 1.5 s
    expected = [1 + 2 * 2 / 22, 1 + 2 * 8 / 22, 1 + 2 * 12 / 22, 1 + 2 * 16 / 22,
                3.5 + 1.5 * 13 / 27, 3.5 + 1.5 * 15 / 27, 3.5 + 1.5 * 21 / 27]
    assert starts(transcript) == approx(expected)
    assert transcript.words[3].end == approx(3.0)


def test_interpolate_by_chars_formula():
    words = interpolate_by_chars("a bb ccc", 10.0, 18.0)  # 8 chars incl. 2 gaps
    assert [(w.text, w.start, w.end) for w in words] == [
        ("a", 10.0, 12.0), ("bb", 12.0, 15.0), ("ccc", 15.0, 18.0)]


# --- cleaning ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("raw", "expected"), [
    ("rock &amp; roll", ["rock", "&", "roll"]),
    ("it&amp;#39;s", ["it's"]),  # escaped twice
    ("donâ€™t", ["don't"]),  # mojibake repaired by ftfy
    ("[Music] hello", ["hello"]),
    ("[Background music] hello", ["hello"]),
    ("what the [ __ ]", ["what", "the"]),  # YouTube's censored word
    ("(laughs). Okay", ["Okay"]),
    ("&gt;&gt; next speaker", ["next", "speaker"]),
    (">>Hi there", ["Hi", "there"]),
    ("- Hi -Bob", ["Hi", "Bob"]),
    ("♪ la la ♪", ["la", "la"]),
    ("well ... okay", ["well", "okay"]),
    ("-5 degrees", ["-5", "degrees"]),
    ("(unclosed and then many more words follow", ["(unclosed", "and", "then", "many", "more", "words", "follow"]),
    ("JOHN: hello there", ["hello", "there"]),  # a speaker label of a manual caption is not speech
    ("DR. SMITH: hi", ["hi"]),
    ("Note: fine", ["Note:", "fine"]),  # not all capitals: speech
    ("well--maybe not", ["well", "maybe", "not"]),
    ("\u4f60\u597d \u3002 \u4e16\u754c \uff01", ["\u4f60\u597d", "\u4e16\u754c"]),  # full-width punctuation
    ("50 % off !", ["50", "%", "off"]),
])
def test_clean_words_rules(raw, expected):
    assert texts(clean_words([Word(raw, 0.0, 1.0)])) == expected


@pytest.mark.parametrize("raw", [">> Hi there", ">>Hi there", "MARY: Hi there", ">> MARY: Hi there"])
def test_marks_take_no_share_of_the_time(raw):
    """The first spoken word starts when its caption unit does, whatever mark came before it."""
    plain = clean_words([Word("Hi there", 10.0, 12.0)])
    marked = clean_words([Word(raw, 10.0, 12.0)])
    assert [(w.text, w.start, w.end) for w in marked] == [(w.text, w.start, w.end) for w in plain]
    assert marked[0].start == 10.0


def test_format_is_told_by_structure_not_by_a_substring(tmp_path):
    from tvts_data.captions import infer_format

    annotation = {"info": {"tags": ["events", "music"], "duration": 3.0},
                  "subtitles": [{"word": "hello", "time": 0.5}], "denoised": [{"cleanasr": "hello"}]}
    assert infer_format(tmp_path / "v.json", json.dumps(annotation)) == "yttemporal"
    json3 = {"events": [{"tStartMs": 0, "dDurationMs": 900, "segs": [{"utf8": "hello"}]}], "note": "subtitles"}
    assert infer_format(tmp_path / "v.json", json.dumps(json3)) == "json3"


def test_clean_words_keeps_times_of_kept_words():
    words = [Word("[Music]", 0.0, 1.0), Word("hello", 1.0, 1.4), Word("&gt;&gt;", 1.4, 1.5), Word("you", 1.5, 2.0)]
    assert clean_words(words) == [Word("hello", 1.0, 1.4), Word("you", 1.5, 2.0)]


def test_only_non_speech_raises_naming_the_file(tmp_path):
    path = tmp_path / "abc123.en.vtt"
    path.write_text("WEBVTT\n\n00:00.000 --> 00:05.000\n[Music]\n\n00:05.000 --> 00:09.000\n♪ ♪\n")
    with pytest.raises(CaptionError, match=r"abc123\.en\.vtt.*no speech words"):
        parse_caption_file(path)


# --- alignment -----------------------------------------------------------------------------------

TIMED = [Word(t, float(i), i + 0.5) for i, t in enumerate(
    ["hey", "guys", "welcome", "back", "too", "my", "channel", "um", "today"])]


def test_align_substitution_insertion_deletion_keep_times():
    aligned = align_clean_transcript(TIMED, "Hey guys, everyone, welcome back to my channel. Today")
    assert texts(aligned) == ["Hey", "guys,", "everyone,", "welcome", "back", "to", "my", "channel.", "Today"]
    # "to" takes the time of "too" (4 s); "um" (7 s) is dropped; "everyone," shares with "guys," the
    # span from 1 s to the next partner's start (2 s), by characters
    assert starts(aligned) == approx([0.0, 1.0, 1.0 + 6 / 15, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0])
    assert aligned[1].end == approx(1.0 + 6 / 15)
    assert aligned[2].end == approx(2.0)
    assert aligned[7].end == approx(6.5)


def test_align_words_edit_distance_prefers_similar_words():
    assert align_words(["i", "am", "gonna", "go"], ["i", "am", "going", "to", "go"]) == [0, 1, 2, None, 3]


def test_align_leading_insertion_shares_the_first_partners_span():
    aligned = align_clean_transcript([Word("world", 2.0, 3.0)], "hello world")
    assert texts(aligned) == ["hello", "world"]
    assert starts(aligned) == approx([2.0, 2.0 + 6 / 11])


# --- YT-Temporal annotations ---------------------------------------------------------------------

YTT_ANNOTATION = json.dumps({
    "subtitles": [
        {"word": "hey", "time": 0.0}, {"word": "guys", "time": 0.149}, {"word": "&gt;&gt;", "time": 0.5},
        {"word": "welcome", "time": 0.9}, {"word": "too", "time": 1.3}, {"word": "my", "time": 1.5},
        {"word": "channel", "time": 1.7}],
    "denoised": [{"cleanasr": "Hey guys,"}, {"cleanasr": "welcome to my channel."}],
    "info": {"duration": 2.0, "title": "a kitchen tour"},
})


def test_yttemporal_aligns_denoised_text_onto_subtitle_times():
    transcript = parse_caption_text(YTT_ANNOTATION, "yttemporal")
    assert texts(transcript) == ["Hey", "guys,", "welcome", "to", "my", "channel."]
    assert starts(transcript) == approx([0.0, 0.149, 0.9, 1.3, 1.5, 1.7])
    assert transcript.words[-1].end == approx(2.0)  # min(start + 0.5, duration)
    assert transcript.timing is Timing.ANNOTATION


def test_yttemporal_without_denoised_uses_subtitle_words():
    data = json.loads(YTT_ANNOTATION)
    data["denoised"] = []
    data["info"]["duration"] = 60.0
    transcript = parse_caption_text(json.dumps(data), "yttemporal")
    assert texts(transcript) == ["hey", "guys", "welcome", "too", "my", "channel"]
    assert transcript.words[-1].end == approx(2.2)


# --- writers -> parsers round trips, for every registered format ---------------------------------


def _spoken_words() -> list[Word]:
    """Words 0.41 s apart, with a 1.9 s pause before the tenth so that writers break the line there."""
    spoken = "so today I'm going to show you how we make fresh pasta at home with just flour and eggs".split()
    onsets = [round(0.137 + 0.41 * i + (1.9 if i >= 9 else 0.0), 3) for i in range(len(spoken))]
    return [Word(text, start, start + 0.3) for text, start in zip(spoken, onsets)]


WORDS = _spoken_words()
SEGMENTS = [(0.5, 2.0, "So today I'm going"), (2.0, 4.25, "to show you how\nwe make pasta"), (6.0, 7.0, "at home")]

WORD_WRITERS = {
    "json3": lambda: write_json3(WORDS),
    "srv3": lambda: write_srv3(WORDS),
    "vtt": lambda: write_vtt_auto(WORDS),
    "yttemporal": lambda: write_yttemporal(WORDS),
}
SEGMENT_WRITERS = {
    "srt": lambda: write_srt(SEGMENTS),
    "srv1": lambda: write_srv1(SEGMENTS),
    "vtt-plain": lambda: write_vtt_plain(SEGMENTS, language="en"),
}


def _format_of(key: str) -> str:
    return key.split("-")[0]


def test_write_json3_layout_like_youtube():
    events = json.loads(write_json3(WORDS))["events"]
    assert "segs" not in events[0]  # window definition
    lines = [e for e in events if "segs" in e and not e.get("aAppend")]
    breaks = [e for e in events if e.get("aAppend")]
    assert len(lines) >= 3 and len(breaks) == len(lines) - 1
    assert all(seg["utf8"] == "\n" for e in breaks for seg in e["segs"])
    assert lines[0]["tStartMs"] + lines[0]["dDurationMs"] > lines[1]["tStartMs"]  # events overlap
    assert "tOffsetMs" not in lines[0]["segs"][0] and lines[0]["segs"][1]["tOffsetMs"] > 0


def test_every_registered_format_has_a_round_trip():
    covered = {_format_of(key) for key in {**WORD_WRITERS, **SEGMENT_WRITERS}}
    assert covered == set(CAPTION_PARSERS)


@pytest.mark.parametrize("fmt", sorted(WORD_WRITERS))
def test_word_level_round_trip(fmt):
    transcript = parse_caption_text(WORD_WRITERS[fmt](), fmt)
    assert texts(transcript) == texts(WORDS)
    assert starts(transcript) == approx(starts(WORDS), abs=1e-3)
    assert all(w.start <= w.end <= n.start for w, n in zip(transcript.words, transcript.words[1:]))


@pytest.mark.parametrize("key", sorted(SEGMENT_WRITERS))
def test_segment_round_trip(key):
    transcript = parse_caption_text(SEGMENT_WRITERS[key](), _format_of(key))
    assert transcript.timing is Timing.INTERPOLATED
    assert texts(transcript) == " ".join(text for _, _, text in SEGMENTS).split()
    firsts = [0, 4, 11]  # index of each segment's first word
    assert [transcript.words[i].start for i in firsts] == approx([s for s, _, _ in SEGMENTS], abs=1e-3)
    assert transcript.words[-1].end == approx(7.0, abs=1e-3)


@pytest.mark.parametrize("key", sorted({**WORD_WRITERS, **SEGMENT_WRITERS}))
def test_format_is_inferred_from_content(key):
    writer = {**WORD_WRITERS, **SEGMENT_WRITERS}[key]
    assert infer_format("captions.txt", writer()) == _format_of(key)


def test_yttemporal_is_recognised_when_subtitles_come_late():
    annotation = json.dumps({"info": {"description": "x" * 10_000}, "subtitles": [{"word": "hi", "time": 0.0}]})
    assert infer_format("video.json", annotation) == "yttemporal"


@pytest.mark.parametrize(("name", "fmt"), [
    ("x.en.json3", "json3"), ("x.en.srv3", "srv3"), ("x.en.vtt", "vtt"), ("x.en.srt", "srt"), ("x.srv1", "srv1")])
def test_format_is_inferred_from_extension(name, fmt):
    assert infer_format(name, "") == fmt


# --- names, languages, dispatch ------------------------------------------------------------------


@pytest.mark.parametrize(("name", "language", "translated"), [
    ("dQw4w9WgXcQ.en.json3", "en", False),
    ("dQw4w9WgXcQ.en-orig.vtt", "en", False),
    ("dQw4w9WgXcQ.de-en.vtt", "de", True),
    ("dQw4w9WgXcQ.pt-BR.srv3", "pt", False),
    ("dQw4w9WgXcQ.zh-Hans.vtt", "zh", False),
    ("dQw4w9WgXcQ.vtt", None, False),
    ("<string>", None, False),
])
def test_track_name(name, language, translated):
    assert caption_track_from_name(name) == (language, translated)
    assert caption_language_from_name(name) == language


def test_parse_caption_file_language_and_translation_from_name(tmp_path):
    path = tmp_path / "vid_0001.de-en.json3"
    path.write_text(AUTO_JSON3)
    transcript = parse_caption_file(path)
    assert (transcript.language, transcript.translated, transcript.source_format) == ("de", True, "json3")
    assert parse_caption_file(path, language="fr-CA").language == "fr"


def test_vtt_language_header_wins_over_file_name(tmp_path):
    path = tmp_path / "vid.fr.vtt"
    path.write_text(YOUTUBE_AUTO_VTT)
    assert parse_caption_file(path).language == "en"


def test_finish_words_sorts_small_jitter_and_sets_ends():
    words = finish_words([("b", 1.2, 5.0), ("a", 1.0, 5.0), ("c", 2.0, 2.5)])
    assert [(w.text, w.start, w.end) for w in words] == [("a", 1.0, 1.2), ("b", 1.2, 2.0), ("c", 2.0, 2.5)]


# --- errors name the file ------------------------------------------------------------------------

BACKWARDS_JSON3 = json.dumps({"events": [
    {"tStartMs": 10000, "dDurationMs": 2000, "segs": [{"utf8": "later"}]},
    {"tStartMs": 3000, "dDurationMs": 2000, "segs": [{"utf8": "earlier"}]},
]})


@pytest.mark.parametrize(("name", "content", "message", "kind"), [
    ("v1.en.json3", AUTO_JSON3[:200], "malformed json3", "captions_malformed"),
    ("v2.en.json3", '{"events": [{"tStartMs": 0}]}', "no caption text", "captions_empty"),
    ("v3.en.json3", BACKWARDS_JSON3, "times go backwards", "times_backwards"),
    ("v4.en.json3", '{"events": [{"tStartMs": "0", "segs": [{"utf8": "x"}]}]}', "not a number", "captions_malformed"),
    ("v5.en.srv3", AUTO_SRV3[:300], "malformed srv3", "captions_malformed"),
    ("v6.en.vtt", "WEBVTT\nKind: captions\n\n", "no cues", "captions_empty"),
    ("v7.en.vtt", "00:00:01.000 --> 00:00:02.000\nhello\n", "not 'WEBVTT'", "captions_malformed"),
    ("v8.en.srt", "just some words\n", "no cues", "captions_malformed"),
    ("v9.json", '{"subtitles": [{"word": "hi"}]}', "numeric 'time'", "captions_malformed"),
    ("v10.json", '{"something": 1}', "cannot tell the caption format", "captions_unknown_format"),
    ("v11.en.json3", '{"events": [{"tStartMs": 0, "segs": [{"utf8": "[Music]"}]}]}', "no speech words",
     "captions_empty"),
])
def test_errors_name_the_file_and_their_kind(tmp_path, name, content, message, kind):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(CaptionError) as info:
        parse_caption_file(path)
    assert name in str(info.value)
    assert message in str(info.value)
    assert info.value.kind == kind


def test_caption_error_keeps_message_and_kind_when_pickled():
    error = pickle.loads(pickle.dumps(CaptionError("v.vtt: no cues", "captions_empty")))
    assert (str(error), error.kind) == ("v.vtt: no cues", "captions_empty")


def test_non_utf8_file_raises_caption_error(tmp_path):
    path = tmp_path / "broken.en.vtt"
    path.write_bytes(b"WEBVTT\n\n00:01.000 --> 00:02.000\n\xff\xfe caf\xe9\n")
    with pytest.raises(CaptionError, match=r"broken\.en\.vtt.*not UTF-8"):
        parse_caption_file(path)


def test_unknown_format_names_the_source():
    with pytest.raises(CaptionError, match=r"clip-7.*unknown caption format 'ass'"):
        parse_caption_text("x", "ass", source="clip-7")
