"""Train domain: a hospital (departments, physicians, patients, appointments), Spider's Capitalized_Style."""

from __future__ import annotations

import random

from sqltrain.minibench import words as W
from sqltrain.minibench.model import Bridge, Col, Domain, Entity, Link, TableSpec, Template

DEPARTMENTS = (
    "Cardiology", "Neurology", "Oncology", "Pediatrics", "Orthopedics", "Dermatology", "Radiology",
    "Emergency Medicine", "Psychiatry", "Gastroenterology", "Ophthalmology", "Urology", "Nephrology",
    "Endocrinology", "Pulmonology", "Rheumatology", "Geriatrics", "Anesthesiology", "Obstetrics", "Pathology",
)
POSITIONS = (("Resident", 5), ("Attending", 6), ("Consultant", 4), ("Surgeon", 3), ("Chief", 1))
BLOOD_TYPES = (("O+", 38), ("A+", 30), ("B+", 9), ("AB+", 4), ("O-", 7), ("A-", 6), ("B-", 2))
CITIES = ("Springfield", "Riverton", "Lakeside", "Fairview", "Greenville", "Oakdale", "Milton", "Westbury")
STATUS = (("Completed", 14), ("Cancelled", 3), ("Scheduled", 3))
MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December")

TABLES = (
    TableSpec("Department", (Col("Department_ID", "INTEGER"), Col("Name"), Col("Floor", "INTEGER"),
                             Col("Budget", "INTEGER")), "Department_ID"),
    TableSpec("Physician", (Col("Physician_ID", "INTEGER"), Col("Name"), Col("Position"),
                            Col("Department_ID", "INTEGER"), Col("Years_Experience", "INTEGER", "years of experience"),
                            Col("Salary", "INTEGER")),
              "Physician_ID", (("Department_ID", "Department", "Department_ID"),)),
    TableSpec("Patient", (Col("Patient_ID", "INTEGER"), Col("Name"), Col("Gender"), Col("Age", "INTEGER"), Col("City"),
                          Col("Blood_Type")), "Patient_ID"),
    TableSpec("Appointment", (Col("Appointment_ID", "INTEGER"), Col("Patient_ID", "INTEGER"),
                              Col("Physician_ID", "INTEGER"), Col("Appointment_Date", "DATE"), Col("Fee", "REAL"),
                              Col("Status")),
              "Appointment_ID", (("Patient_ID", "Patient", "Patient_ID"), ("Physician_ID", "Physician", "Physician_ID"))),
)


def rows(rng: random.Random) -> dict[str, list[tuple]]:
    depts = [(i + 1, n, rng.randint(1, 6), rng.randrange(400, 5000) * 1000) for i, n in enumerate(DEPARTMENTS)]
    staffed = W.some(rng, [d[0] for d in depts], 3)
    physicians = []
    for i, name in enumerate(W.unique(rng, 45, W.full_name)):
        years = rng.randint(1, 35)
        physicians.append((i + 1, name, W.weighted(rng, POSITIONS), W.pick(rng, staffed), years,
                           (90 + years * 6 + rng.randrange(0, 60)) * 1000))
    patients = [(i + 1, name, W.pick(rng, ("Female", "Male")), rng.randint(1, 95), W.pick(rng, CITIES),
                 W.weighted(rng, BLOOD_TYPES)) for i, name in enumerate(W.unique(rng, 120, W.full_name))]
    seen = W.some(rng, [p[0] for p in patients], 12)
    working = W.some(rng, [p[0] for p in physicians], 5)
    appointments = [(i + 1, W.pick(rng, seen), W.pick(rng, working), W.day(rng, "2024-01-01", "2024-12-31"),
                     float(rng.randrange(10, 80) * 5), W.weighted(rng, STATUS)) for i in range(200)]
    return {"Department": depts, "Physician": physicians, "Patient": patients, "Appointment": appointments}


_MONTH_SLOT = tuple((f"2024-{i + 1:02d}", f"{m} 2024") for i, m in enumerate(MONTHS))
TEMPLATES = (
    Template("custom", ("What is the total fee of appointments with status {v}?", "Find the sum of fees of all {v} appointments."),
             "SELECT sum(Fee) FROM Appointment WHERE Status = {v}", (("v", "SELECT DISTINCT Status FROM Appointment"),), 2),
    Template("custom", ("How many appointments took place in {v[1]}?", "Count the appointments in {v[1]}."),
             "SELECT count(*) FROM Appointment WHERE Appointment_Date LIKE {v[0]:prefix}", (("v", _MONTH_SLOT),), 2),
    Template("custom", ("Which department pays the highest total salary to its physicians?",
                        "Find the name of the department whose physicians have the largest total salary."),
             "SELECT T2.Name FROM Physician AS T1 JOIN Department AS T2 ON T1.Department_ID = T2.Department_ID "
             "GROUP BY T1.Department_ID ORDER BY sum(T1.Salary) DESC LIMIT 1", instances=1),
    Template("custom", ("What are the names of patients older than {v} who have a cancelled appointment?",
                        "List the names of patients above age {v} with at least one cancelled appointment."),
             "SELECT DISTINCT T1.Name FROM Patient AS T1 JOIN Appointment AS T2 ON T1.Patient_ID = T2.Patient_ID "
             "WHERE T1.Age > {v} AND T2.Status = 'Cancelled'", (("v", (30, 40, 50, 60, 70)),), 2),
    Template("custom", ("Find the names of physicians in {v} with more than {x} years of experience.",
                        "Which physicians working in {v} have over {x} years of experience?"),
             "SELECT T1.Name FROM Physician AS T1 JOIN Department AS T2 ON T1.Department_ID = T2.Department_ID "
             "WHERE T2.Name = {v} AND T1.Years_Experience > {x}",
             (("v", "SELECT DISTINCT T2.Name FROM Physician AS T1 JOIN Department AS T2 ON T1.Department_ID = T2.Department_ID"),
              ("x", (5, 10, 15, 20))), 2),
    Template("custom", ("What is the average fee of appointments with physicians from {v}?",
                        "Find the average appointment fee for physicians of the {v} department."),
             "SELECT avg(T1.Fee) FROM Appointment AS T1 JOIN Physician AS T2 ON T1.Physician_ID = T2.Physician_ID "
             "JOIN Department AS T3 ON T2.Department_ID = T3.Department_ID WHERE T3.Name = {v}",
             (("v", "SELECT DISTINCT Name FROM Department"),), 2),
    Template("custom", ("Which departments are on floor {v} and have a budget above {x}?",),
             "SELECT Name FROM Department WHERE Floor = {v} AND Budget > {x}",
             (("v", "SELECT DISTINCT Floor FROM Department"), ("x", (1000000, 2000000, 3000000))), 2),
)

BRIDGE = Bridge("Appointment", ("Patient_ID", "Patient"), ("Physician_ID", "Physician"), {
    "a_of_b": ("Which patients have had an appointment with {v}? Give their names.",
               "List the names of patients who saw the physician {v}."),
    "b_of_a": ("Which physicians has {v} had appointments with?", "What are the names of the physicians seen by patient {v}?"),
    "count_b": ("How many appointments does the physician {v} have?", "Count the appointments of physician {v}."),
    "count_a": ("How many appointments has the patient {v} had?", "How many times did {v} have an appointment?"),
    "count_a_of_b": ("How many different patients has {v} seen?", "Count the distinct patients of physician {v}."),
    "per_b": ("For each physician with appointments, show the name and the number of appointments.",),
    "top_b": ("Which physician has the most appointments?", "Find the name of the physician with the largest number of appointments."),
    "top_a": ("Which patient has had the most appointments? Give the name.",),
    "a_never": ("Which patients have never had an appointment?", "List the names of patients without any appointment."),
    "b_never": ("Which physicians have no appointments? List their names.",),
    "a_both": ("Which patients have seen both {v} and {x}?", "Find the names of patients with appointments with {v} and with {x}."),
    "a_of_bcat": ("List the names of patients who had an appointment with a physician in the position {v}.",),
    "b_of_acat": ("Which physicians have seen {v} patients? Give their names.",),
})

DOMAIN = Domain(
    "hospital", TABLES, rows,
    entities=(
        Entity("Department", "department", ("Name",), categories=("Floor",), measures=("Budget",), totals=("Budget",)),
        Entity("Physician", "physician", ("Name",), categories=("Position",), measures=("Years_Experience", "Salary"),
               totals=("Salary",), pronoun="their"),
        Entity("Patient", "patient", ("Name",), categories=("Gender", "City", "Blood_Type"), measures=("Age",),
               pronoun="their"),
        Entity("Appointment", "appointment", categories=("Status",), measures=("Fee",), totals=("Fee",)),
    ),
    links=(Link("Physician", "Department_ID", "Department", "working in {}",
                ("Which department does {v} work in?", "What is the name of the department of physician {v}?")),),
    bridges=(BRIDGE,),
    templates=TEMPLATES,
)
