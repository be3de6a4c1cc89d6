"""A client in another language drives Haven's staff API with nothing but proto/ (issue 15).

Stubs are generated at test time by grpcio-tools (tests/e2e/python_client.rs passes the folder
in PYTHONPATH). Usage: flow.py CONTROLLER_URL CA_PEM_FILE ADMIN_TOKEN

Each step prints one line; any failure raises, and the process exits non-zero.
"""

import datetime
import sys

import grpc
from google.protobuf import timestamp_pb2

from haven.admin.v1 import admin_pb2 as api
from haven.admin.v1 import admin_pb2_grpc as rpc
from haven.admin.v1 import plan_pb2 as plan
import rpc_status_pb2

TLS_NAME = "controller.haven.internal"


def refusal(err):
    """The ErrorInfo (reason, clause) and the fields a refusal names, from its trailer."""
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = rpc_status_pb2.Status.FromString(value)
            info, fields = None, []
            for any_ in status.details:
                if any_.type_url.endswith("/google.rpc.ErrorInfo"):
                    info = rpc_status_pb2.ErrorInfo.FromString(any_.value)
                elif any_.type_url.endswith("/google.rpc.BadRequest"):
                    bad = rpc_status_pb2.BadRequest.FromString(any_.value)
                    fields = [v.field for v in bad.field_violations]
            return info, fields
    return None, []


def expect_refusal(call, code, reason, clause=None, field=None):
    try:
        call()
    except grpc.RpcError as err:
        assert err.code() == code, (err.code(), err.details())
        info, fields = refusal(err)
        assert info is not None, "no ErrorInfo in the refusal"
        assert info.domain == "haven.homes", info.domain
        assert info.reason == reason, (info.reason, err.details())
        if clause is not None:
            assert info.metadata.get("clause") == clause, dict(info.metadata)
        if field is not None:
            assert field in fields, fields
        return info
    raise AssertionError(f"expected {reason}, but the call succeeded")


def main():
    url, ca_file, admin_token = sys.argv[1:4]
    target = url.removeprefix("https://")
    with open(ca_file, "rb") as f:
        creds = grpc.ssl_channel_credentials(root_certificates=f.read())
    channel = grpc.secure_channel(
        target, creds, options=[("grpc.ssl_target_name_override", TLS_NAME)]
    )

    def as_(token):
        return [("authorization", f"Bearer {token}")]

    admin = as_(admin_token)
    homes = rpc.HomeServiceStub(channel)
    children = rpc.ChildServiceStub(channel)
    staff = rpc.StaffServiceStub(channel)
    emergency = rpc.EmergencyServiceStub(channel)

    home = homes.AddHome(api.AddHomeRequest(name="Birch House"), metadata=admin)
    print(f"home added: {home.id}")
    added = staff.AddStaff(
        api.AddStaffRequest(
            name="Lee Manager", staff_role=api.STAFF_ROLE_MANAGER, homes=[home.id]
        ),
        metadata=admin,
    )
    manager = as_(added.token)
    # The role is an enum; the deprecated words field beside it is still filled.
    assert added.member.staff_role == api.STAFF_ROLE_MANAGER, added.member
    assert added.member.role == "manager", added.member
    print(f"manager added: {added.member.id} as {api.StaffRole.Name(added.member.staff_role)}")
    child = children.AddChild(
        api.AddChildRequest(home=home.id, name="Jordan Reed", date_of_birth="2011-03-02"),
        metadata=manager,
    )
    print(f"child added: {child.id}")

    # A name a person typed, turned into the id a program sends.
    found = rpc.LookupServiceStub(channel).Lookup(
        api.LookupRequest(name="jordan", kinds=[api.LOOKUP_KIND_CHILD]), metadata=manager
    ).matches
    assert [m.id for m in found] == [child.id], found
    print(f"looked up: jordan is {found[0].id}")

    plans = rpc.PlanServiceStub(channel)
    today = datetime.date.today()
    past = (today - datetime.timedelta(days=5)).isoformat()
    later = (today + datetime.timedelta(days=60)).isoformat()
    no = plan.ChecklistAnswer(answer=plan.ANSWER_NO)
    yes = plan.ChecklistAnswer(answer=plan.ANSWER_YES)

    # clause KP2, GD1, GD2: a risk assessment as a typed message, every question answered.
    recorded = plans.RecordRiskAssessment(
        api.RecordRiskAssessmentRequest(
            child=child.id,
            risk_assessment=plan.RiskAssessment(
                kind=plan.RISK_ASSESSMENT_KIND_PLANNED,
                considerations=plan.RiskConsiderations(
                    background="Jordan lived with his Nan until last year.",
                    circumstances_on_the_day="A settled week at school.",
                    risks_to_or_from_contacts="None known; Nan supports the placement.",
                ),
                checklist=plan.RiskChecklist(
                    contact_order=no,
                    protection_plan_or_child_in_need=no,
                    care_plan_placement_plan_or_chronology=no,
                    parents_consulted_or_consented=plan.ChecklistAnswer(
                        answer=plan.ANSWER_YES, notes="Mum agreed by phone."
                    ),
                    contact_known=yes,
                    contact_is_adult=yes,
                    contact_poses_risk=no,
                    child_may_be_harmed=no,
                    child_may_harm_others=no,
                ),
                outcome="Calls with Nan are safe and good for Jordan.",
                review_by=later,
                participants=plan.RiskParticipants(
                    social_worker="J. Okafor", manager="Lee Manager"
                ),
            ),
        ),
        metadata=manager,
    )
    ra = recorded.id
    print(f"risk assessment recorded: {ra}")
    listed = plans.ListRiskAssessments(
        api.ListRiskAssessmentsRequest(child=child.id), metadata=manager
    ).risk_assessments
    assert [r.id for r in listed] == [ra], listed
    back = listed[0].risk_assessment
    assert back.kind == plan.RISK_ASSESSMENT_KIND_PLANNED, back
    assert back.checklist.contact_known.answer == plan.ANSWER_YES, back
    assert back.review_by == later, back
    print(f"risk assessment read back: {plan.RiskAssessmentKind.Name(back.kind)}")

    def placement_plan(risk_assessment_id):
        return plan.PlacementPlan(
            reason="Nan asked to phone Jordan after school; risk assessed and agreed.",
            child_views="Jordan would like to talk to Nan every day.",
            consultation=plan.PlanConsultation(
                social_worker=plan.ConsultationRecord(
                    consulted=plan.Consulted(who="J. Okafor", when=past)
                ),
                parents=plan.ConsultationRecord(
                    consulted=plan.Consulted(who="Mum", when=past)
                ),
            ),
            shared_with=plan.SharedWith(child=True, social_worker=True, others=["Nan"]),
            communication=plan.CommunicationSection(
                contacts=[
                    plan.ContactPermission(
                        name="Nan",
                        relationship="grandmother",
                        addresses=[
                            plan.ContactAddress(
                                channel=plan.CONTACT_CHANNEL_CALL, address="07700 900123"
                            )
                        ],
                        windows=[plan.TimeWindow(start_minute=960, end_minute=1200)],
                        risk_assessment_id=risk_assessment_id,
                    )
                ],
            ),
        )

    # clause RM1, RM2, KP2: a plan revision as a typed message, its permission resting on the
    # risk assessment just recorded.
    revised = plans.RevisePlan(
        api.RevisePlanRequest(child=child.id, based_on_revision=0, plan=placement_plan(ra)),
        metadata=manager,
    )
    assert revised.number == 1, revised
    print(f"plan revised: revision {revised.number}")
    history = plans.PlanHistory(
        api.PlanHistoryRequest(child=child.id), metadata=manager
    ).revisions
    assert [r.number for r in history] == [1], history
    nan = history[0].plan.communication.contacts[0]
    assert nan.name == "Nan" and nan.risk_assessment_id == ra, nan
    assert nan.addresses[0].channel == plan.CONTACT_CHANNEL_CALL, nan
    assert nan.addresses[0].address == "+447700900123", nan  # stored in E.164
    print(f"plan read back: Nan on {nan.addresses[0].address}")

    # clause KP2: a permission that names no risk assessment is refused, typed, and nothing
    # is written.
    expect_refusal(
        lambda: plans.RevisePlan(
            api.RevisePlanRequest(
                child=child.id, based_on_revision=1, plan=placement_plan("")
            ),
            metadata=manager,
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "PERMISSION_NEEDS_RISK_ASSESSMENT",
        clause="KP2",
    )
    history = plans.PlanHistory(
        api.PlanHistoryRequest(child=child.id), metadata=manager
    ).revisions
    assert len(history) == 1, history
    print("refused: PERMISSION_NEEDS_RISK_ASSESSMENT (KP2)")

    # clause RM3: a lockdown for a reason that is not protective is refused, typed.
    expect_refusal(
        lambda: emergency.Lockdown(
            api.LockdownRequest(child=child.id, reason="punishment", note="x"),
            metadata=manager,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "LOCKDOWN_REASON_NOT_PROTECTIVE",
        clause="RM3",
        field="reason",
    )
    print("refused: LOCKDOWN_REASON_NOT_PROTECTIVE (RM3)")

    # Times travel as google.protobuf.Timestamp both ways.
    review_ts = timestamp_pb2.Timestamp()
    review_ts.FromDatetime(
        datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        + datetime.timedelta(hours=2)
    )
    done = emergency.Lockdown(
        api.LockdownRequest(
            child=child.id,
            protective_reason=plan.RESTRICTION_REASON_INJURY_TO_CHILD,
            withdraw=[api.COMMUNICATION_CHANNEL_CALLS, api.COMMUNICATION_CHANNEL_MESSAGES],
            note="Threats made on a call this evening",
            review_at=review_ts,
        ),
        metadata=manager,
    )
    lockdown = done.lockdown
    assert lockdown.review_at.seconds == review_ts.seconds, lockdown
    assert lockdown.started_at.seconds > 0, lockdown
    print(f"review at, as a Timestamp both ways: {lockdown.review_at.ToJsonString()}")
    assert lockdown.in_force, lockdown
    assert lockdown.protective_reason == plan.RESTRICTION_REASON_INJURY_TO_CHILD, lockdown
    assert lockdown.reason == "injury-to-child", lockdown
    assert lockdown.target_kind == api.LOCKDOWN_TARGET_CHILD, lockdown
    assert list(lockdown.withdrawn) == [
        api.COMMUNICATION_CHANNEL_CALLS,
        api.COMMUNICATION_CHANNEL_MESSAGES,
    ], lockdown
    print(f"lockdown reason: {plan.RestrictionReason.Name(lockdown.protective_reason)}")
    print(f"locked down: {lockdown.id}, {len(done.devices)} devices (none enrolled)")

    sanctions = emergency.ListSanctions(
        api.ListSanctionsRequest(home=home.id), metadata=manager
    ).sanctions
    mine = [s for s in sanctions if s.lockdown_id == lockdown.id]
    assert len(mine) == 1, sanctions
    print(f"sanction: {mine[0].id} for {mine[0].child_name}")

    obligations = emergency.ListObligations(
        api.ListObligationsRequest(home=home.id), metadata=manager
    ).obligations
    kinds = sorted(
        api.ObligationKind.Name(o.obligation_kind)
        for o in obligations
        if o.lockdown_id == lockdown.id
    )
    assert "OBLIGATION_KIND_NOTIFY_SOCIAL_WORKER" in kinds, kinds
    assert all(
        o.obligation_state == api.OBLIGATION_STATE_DUE
        for o in obligations
        if o.lockdown_id == lockdown.id
    ), obligations
    print(f"obligations: {', '.join(kinds)}")

    # Issue 15: a list that can grow comes a page at a time. One obligation a page, each once
    # and in the whole list's order; the last page has an empty next_page_token.
    paged, token, pages = [], "", 0
    while True:
        page = emergency.ListObligations(
            api.ListObligationsRequest(home=home.id, page_size=1, page_token=token),
            metadata=manager,
        )
        assert len(page.obligations) <= 1, page
        paged.extend(o.id for o in page.obligations)
        pages += 1
        assert pages <= len(obligations) + 1, "paging did not end"
        token = page.next_page_token
        if not token:
            break
    assert paged == [o.id for o in obligations], (paged, [o.id for o in obligations])
    print(f"paged: {len(paged)} obligations, one a page")

    # A token used with other filters is refused by reason, naming the field.
    first = emergency.ListObligations(
        api.ListObligationsRequest(home=home.id, page_size=1), metadata=manager
    )
    expect_refusal(
        lambda: emergency.ListObligations(
            api.ListObligationsRequest(
                home=home.id, include_done=True, page_size=1,
                page_token=first.next_page_token,
            ),
            metadata=manager,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "PAGE_TOKEN_INVALID",
        field="page_token",
    )
    print("refused: PAGE_TOKEN_INVALID")

    expect_refusal(
        lambda: homes.ListHomes(api.ListHomesRequest(), metadata=as_("hvn_not_a_token")),
        grpc.StatusCode.UNAUTHENTICATED,
        "TOKEN_INVALID",
    )
    print("refused: TOKEN_INVALID")
    print("FLOW OK")


if __name__ == "__main__":
    main()
