"""Chunk claims: an owner from the front and a helper from the back share a slice's chunks
without taking one twice; a cut moves where the next tick starts, part-way into a chunk if need
be; nothing leaks."""

from __future__ import annotations

from engine.runtime.claims import BACK, FIRST, FRONT, NEXT, OFFSET, ChunkClaims
from engine.runtime.shm import Run, entries_of

SLICES = (((0, 95),), ((95, 200),))           # two workers, one population, chunks of 10


def test_owner_and_helper_share_a_slice_without_overlap() -> None:
    run = Run()
    try:
        claims = ChunkClaims.create(run, SLICES, 10)
        helper_view = ChunkClaims.attach(Run(run.run_id, owner=False), SLICES, 10)
        assert claims.helpers and claims.n_chunks.tolist() == [[10], [11]]
        for _ in range(3):                                  # the same every tick
            claims.start_tick()
            taken = []
            while True:
                front = claims.take_front(1, 0)
                back = helper_view.take_back(1, 0)
                taken += [i for i in (front, back) if i >= 0]
                if front < 0 and back < 0:
                    break
            assert sorted(taken) == list(range(11))
            assert claims.take_front(1, 0) == -1 and helper_view.take_back(1, 0) == -1
        claims.start_tick()
        assert [claims.take_front(0, 0) for _ in range(3)] == [0, 1, 2]
        claims.cut(0, 0)                                    # the deadline: 3..9 not reached
        assert helper_view.take_back(0, 0) == 9             # a helper was still at work
        claims.start_tick()
        assert claims.table[0, 0, FIRST] == claims.table[0, 0, NEXT] == 3
        assert claims.table[0, 0, FRONT] == claims.table[0, 0, BACK] == 0
        assert [claims.take_front(0, 0) for _ in range(8)] == [3, 4, 5, 6, 7, 8, 9, 0]
        assert helper_view.take_back(0, 0) == 2             # the back is the chunk before 3
    finally:
        run.close()
    assert entries_of([run.run_id]) == []


def test_one_process_claims_take_every_chunk_in_turn() -> None:
    claims = ChunkClaims.local((((0, 25),),), 10)
    assert not claims.helpers
    claims.start_tick()
    assert [claims.take_front(0, 0) for _ in range(4)] == [0, 1, 2, -1]
    claims.start_tick()
    claims.take_front(0, 0)
    claims.cut(0, 0)
    claims.start_tick()
    assert [claims.take_front(0, 0) for _ in range(4)] == [1, 2, 0, -1]


def test_a_cut_part_way_into_a_chunk_resumes_at_the_first_agent_not_stepped() -> None:
    claims = ChunkClaims.local((((0, 25),),), 10)       # chunks 0..10, 10..20, 20..25
    claims.start_tick()
    assert claims.span(0, 0, claims.take_front(0, 0)) == (0, 10)
    piece = claims.take_front(0, 0)
    assert claims.span(0, 0, piece) == (10, 20)
    claims.cut(0, 0, 14)                                # 10..14 stepped, the deadline came
    claims.start_tick()
    assert (claims.table[0, 0, FIRST], claims.table[0, 0, OFFSET]) == (1, 4)
    assert claims.pieces(0, 0) == 4                     # the cut chunk's head comes last
    spans = []
    while (piece := claims.take_front(0, 0)) >= 0:
        spans.append(claims.span(0, 0, piece))
    assert spans == [(14, 20), (20, 25), (0, 10), (10, 14)]
    claims.start_tick()                                 # not cut: the same start again
    assert claims.span(0, 0, claims.take_front(0, 0)) == (14, 20)
    claims.cut(0, 0)                                    # cut between pieces: the next one
    claims.start_tick()
    assert (claims.table[0, 0, FIRST], claims.table[0, 0, OFFSET]) == (2, 0)
    assert claims.pieces(0, 0) == 3


def test_owner_and_helper_cover_a_slice_cut_part_way_exactly_once() -> None:
    run = Run()
    try:
        claims = ChunkClaims.create(run, SLICES, 10)
        helper_view = ChunkClaims.attach(Run(run.run_id, owner=False), SLICES, 10)
        claims.start_tick()
        claims.take_front(1, 0)
        claims.cut(1, 0, 7)                             # worker 1 stopped at agent 7
        for _ in range(2):
            claims.start_tick()
            agents = []
            while True:
                front, back = claims.take_front(1, 0), helper_view.take_back(1, 0)
                for view, piece in ((claims, front), (helper_view, back)):
                    if piece >= 0:
                        agents += range(*view.span(1, 0, piece))
                if front < 0 and back < 0:
                    break
            assert sorted(agents) == list(range(105))
        # a helper stopped part-way, the owner not cut: the next tick starts where it stopped
        claims.start_tick()
        helper_view.helper_stopped(1, 0, 93)
        claims.start_tick()
        assert claims.span(1, 0, claims.take_front(1, 0)) == (93, 100)
        # the owner cut as well: the owner's cut wins
        helper_view.helper_stopped(1, 0, 50)
        claims.cut(1, 0, 95)
        claims.start_tick()
        assert claims.span(1, 0, claims.take_front(1, 0)) == (95, 100)
    finally:
        run.close()
    assert entries_of([run.run_id]) == []
