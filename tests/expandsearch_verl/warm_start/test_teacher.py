"""The warm start's teacher: query variants, the second search's name, turns cut as an engine cuts them."""

from __future__ import annotations

import pytest

from expandsearch_verl.warm_start.teacher import (
    Teacher,
    TeacherRow,
    keyword_form,
    names_in,
    query_variants,
    second_search,
)


def test_keyword_form_drops_stop_words_and_punctuation():
    assert keyword_form("who wrote the novel dracula") == "wrote novel dracula"
    assert (
        keyword_form("Where was the director of film Psycho (1960) born?") == "director film Psycho 1960 born"
    )


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("Which company was founded first, Microsoft or Apple Inc.?", ["Microsoft", "Apple Inc"]),
        ("Are Vatican City and Monaco both city-states?", ["Vatican City", "Monaco"]),
        ("Which river flows where the parent company of Škoda Auto is?", ["Škoda Auto"]),
        ("What is the capital of the country that won the 1958 FIFA World Cup?", ["1958 FIFA World Cup"]),
        ("Where was the director of film Psycho (1960) born?", ["Psycho"]),  # a bare year is no name
        ("who painted the mona lisa", []),
    ],
)
def test_names_are_runs_of_capitalised_words_without_the_question_word(text, names):
    assert names_in(text) == names


def test_variants_are_distinct_and_the_style_reorders_them():
    question = "The director of Jurassic Park was born in which city?"
    first = query_variants(question, 0)
    assert first == [
        "The director of Jurassic Park was born in which city",
        "director Jurassic Park born city",
        "Jurassic Park",
    ]
    assert query_variants(question, 1) == [first[1], first[2], first[0]]
    assert query_variants("who wrote dracula", 0) == ["who wrote dracula", "wrote dracula"]  # no name: two


def test_the_second_search_is_the_other_name_or_a_new_name_read():
    assert second_search("Which film came out first, Titanic (1997) or Jurassic Park?", "") == "Titanic"
    observation = (
        "Doc 1 (Title: Jurassic Park (film))\n...\nDoc 2 (Title: Steven Spielberg)\nSteven Spielberg..."
    )
    assert (
        second_search("The director of Jurassic Park was born in which city?", observation)
        == "Steven Spielberg"
    )
    assert second_search("Who directed Jurassic Park?", "Jurassic Park: a film.") is None


async def test_turns_end_at_the_stop_string_and_the_budget(chat_tokenizer):
    row = TeacherRow("hotpotqa", "The director of Jurassic Park was born in which city?", "Cincinnati", 0)
    teacher = Teacher(chat_tokenizer, row)
    stops = {"stop": ["</search>", "</answer>"], "max_tokens": 200}
    first = await teacher.generate("r", prompt_ids=[1, 2], sampling_params=stops)
    text = chat_tokenizer.decode(first.token_ids)
    assert text.startswith("<think>") and text.endswith("</search>") and "Jurassic Park\n</search>" in text
    seen = chat_tokenizer.encode("<information>\nDoc 1 (Title: Steven Spielberg)\n...</information>")
    second = chat_tokenizer.decode(
        (await teacher.generate("r", prompt_ids=seen, sampling_params=stops)).token_ids
    )
    assert "<search>\nSteven Spielberg\nSteven Spielberg director Jurassic Park born\n</search>" in second
    answer = await teacher.generate("r", prompt_ids=seen, sampling_params={**stops, "max_tokens": 5})
    assert len(answer.token_ids) == 5  # cut at the budget, as an engine cuts it
    one_search = Teacher(chat_tokenizer, row, second_search=False)
    await one_search.generate("r", prompt_ids=[1], sampling_params=stops)
    final = await one_search.generate("r", prompt_ids=seen, sampling_params=stops)
    assert (
        chat_tokenizer.decode(final.token_ids)
        == "<think>The answer is Cincinnati.</think>\n<answer> Cincinnati </answer>"
    )
