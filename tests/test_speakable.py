"""The speech-output filter: what an LLM writes, made fit to be spoken (pure text, no models)."""

from __future__ import annotations

import pytest

from voice_tutor.dialogue.prompts import instructions
from voice_tutor.dialogue.speakable import SpeechFilter, clean_markup


def spoken(text: str, *, piece: int = 3, **options) -> list[str]:
    """``text`` streamed through a filter in pieces of ``piece`` characters (split anywhere)."""
    speech = SpeechFilter(**options)
    out: list[str] = []
    for start in range(0, len(text), piece):
        out += speech.push(text[start : start + piece])
    return out + speech.finish()


@pytest.mark.parametrize(
    ("written", "said"),
    [
        ("**Great** job, _really_!", "Great job, really!"),
        ("I don&#39;t know &amp; you don&apos;t either.", "I don't know & you don't either."),
        ("### Step one", "Step one"),
        ("- first\n- second", "first second"),
        ("1. Add seven.\n2. Add five.", "Add seven. Add five."),
        ("Watch [the video](https://example.com/v).", "Watch the video."),
        ("Go to https://example.com/x?a=1 now.", "Go to now."),
        ("Type `12` or run `print(x + 1)` here.", "Type 12 or run here."),
        ("That is <b>right</b>.", "That is right."),
        ("&lt;script&gt;alert(1)&lt;/script&gt;Fine.", "Fine."),
        ("Call record_assessment, not _this_.", "Call record_assessment, not this."),
        ("Well done 🎉👍!", "Well done!"),
        ("| a | b |\n|---|---|\n| 1 | 2 |", "a, b, 1, 2,"),
    ],
)
def test_markup_is_removed_and_entities_decoded(written, said):
    assert " ".join(s.strip() for s in spoken(written)) == said


def test_code_blocks_are_never_read_out_even_split_across_pieces():
    text = "Here is how.\n```python\nfor i in range(3):\n    print(i)\n```\nNow you try. ``` never closed code"
    for piece in (1, 2, 5, 100):
        assert spoken(text, piece=piece) == ["Here is how. ", "Now you try. "]


def test_json_written_instead_of_a_tool_call_is_not_said():
    assert spoken('{"name": "give_hint", "arguments": {"question_id": "q1"}}\nLet me help.') == ["Let me help."]
    assert spoken("<tool_call>{\"name\": \"give_hint\"}</tool_call> Let me help.") == ["Let me help."]


def test_echoed_instructions_and_internal_names_are_dropped_but_lesson_words_are_not():
    speech = dict(instructions=instructions(["record_assessment", "give_hint"]),
                  internal_names=["record_assessment", "give_hint", "question_id"])
    text = ("Your words are spoken aloud: answer in one to three short sentences, no lists. "
            "I will now call give_hint for question_id add-7-5. "
            "What is seven plus five? Ask one question at a time. Take your time, please.")
    assert spoken(text, **speech) == ["What is seven plus five? ", "Take your time, please."]


def test_a_turn_stops_at_its_cap_on_a_sentence_end():
    text = " ".join(f"Sentence number {n} is here." for n in range(100))
    said = spoken(text, max_chars=120)
    assert "".join(said) == ("Sentence number 0 is here. Sentence number 1 is here. "
                             "Sentence number 2 is here. Sentence number 3 is here. ")


def test_a_first_sentence_longer_than_the_cap_is_cut_at_a_word():
    said = spoken("word " * 100, max_chars=50, max_sentence_words=100)
    assert said == ["word word word word word word word word word word."]


def test_run_on_sentences_are_broken_near_a_comma():
    text = "one two three four five six, seven eight nine ten eleven twelve thirteen fourteen"
    assert spoken(text, max_sentence_words=8) == ["one two three four five six. ",
                                                  "seven eight nine ten eleven twelve thirteen fourteen"]


def test_a_broken_reply_keeps_a_finished_sentence_only():
    speech = SpeechFilter()
    assert speech.push("That is right.") == []
    assert speech.finish_broken() == ["That is right."]
    speech = SpeechFilter()
    speech.push("That is ri")
    assert speech.finish_broken() == []


def test_clean_markup_leaves_plain_speech_alone():
    plain = "Seven plus five is twelve, well done! What is 3.5 plus 1/2?"
    assert clean_markup(plain) == plain
