"""`connxt demo` reads each answer, and says which step failed when one is not as expected."""

import httpx
import pytest

from commands.demo import DemoFailed, expect


def test_an_answer_is_read_with_or_without_the_envelope():
    answer = httpx.Response(200, json={"data": {"id": "psp_1"}})
    assert expect(answer, "Step 2") == {"id": "psp_1"}
    assert expect(answer, "Sandbox", envelope=False) == {"data": {"id": "psp_1"}}


@pytest.mark.parametrize("envelope", [True, False])
def test_a_refused_answer_fails_the_step_it_answers(envelope):
    # Without the envelope too: the sandbox's control calls must not pass for done.
    answer = httpx.Response(503, text="not ready")
    with pytest.raises(DemoFailed, match="Sandbox: HTTP 503: not ready"):
        expect(answer, "Sandbox", envelope=envelope)


def test_an_answer_that_is_not_json_fails_the_step():
    with pytest.raises(DemoFailed, match="Step 1: HTTP 200"):
        expect(httpx.Response(200, text="<html>"), "Step 1")
