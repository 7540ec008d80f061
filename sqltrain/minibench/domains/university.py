"""Train domain: a university (departments, instructors, courses, students, enrollments)."""

from __future__ import annotations

import random

from sqltrain.minibench import words as W
from sqltrain.minibench.model import Bridge, Col, Domain, Entity, Link, TableSpec, Template

DEPARTMENTS = (
    ("CS", "Computer Science"), ("MATH", "Mathematics"), ("PHYS", "Physics"), ("CHEM", "Chemistry"),
    ("BIO", "Biology"), ("HIST", "History"), ("ENG", "English"), ("PHIL", "Philosophy"), ("ECON", "Economics"),
    ("PSY", "Psychology"), ("SOC", "Sociology"), ("MUS", "Music"), ("ART", "Art"), ("LING", "Linguistics"),
    ("GEO", "Geology"), ("STAT", "Statistics"), ("POLS", "Political Science"), ("ANTH", "Anthropology"),
    ("EDU", "Education"), ("ENGR", "Engineering"),
)
BUILDINGS = ("Science Hall", "Main Building", "Humanities Center", "Watson Hall", "Taylor Hall", "North Tower")
COURSE_TITLES = ("Introduction to {}", "Advanced {}", "Topics in {}", "{} Seminar", "Foundations of {}",
                 "Research Methods in {}", "History of {}")
SEMESTERS = ("Fall 2023", "Spring 2024", "Fall 2024")
GRADES = (("A", 5), ("B", 6), ("C", 4), ("D", 1), ("F", 1))

TABLES = (
    TableSpec("departments", (Col("dept_code"), Col("dept_name", phrase="name"), Col("building"),
                              Col("budget", "INTEGER")), "dept_code"),
    TableSpec("instructors", (Col("instructor_id", "INTEGER"), Col("name"), Col("dept_code"), Col("salary", "INTEGER"),
                              Col("hire_year", "INTEGER")),
              "instructor_id", (("dept_code", "departments", "dept_code"),)),
    TableSpec("courses", (Col("course_id"), Col("title"), Col("dept_code"), Col("instructor_id", "INTEGER"),
                          Col("credits", "INTEGER")),
              "course_id", (("dept_code", "departments", "dept_code"), ("instructor_id", "instructors", "instructor_id"))),
    TableSpec("students", (Col("student_id", "INTEGER"), Col("first_name"), Col("last_name"), Col("major_code"),
                           Col("enrollment_year", "INTEGER"), Col("gpa", "REAL", "GPA")),
              "student_id", (("major_code", "departments", "dept_code"),)),
    TableSpec("enrollments", (Col("enrollment_id", "INTEGER"), Col("student_id", "INTEGER"), Col("course_id"),
                              Col("semester"), Col("grade")),
              "enrollment_id", (("student_id", "students", "student_id"), ("course_id", "courses", "course_id"))),
)


def rows(rng: random.Random) -> dict[str, list[tuple]]:
    depts = [(code, name, W.pick(rng, BUILDINGS), rng.randrange(20, 300) * 10000) for code, name in DEPARTMENTS]
    hiring = W.some(rng, [d[0] for d in depts], 2)
    instructors = [(i + 1, n, W.pick(rng, hiring), rng.randrange(55, 190) * 1000, rng.randint(1990, 2023))
                   for i, n in enumerate(W.unique(rng, 50, W.full_name))]
    by_dept: dict[str, list[int]] = {}
    for ins in instructors:
        by_dept.setdefault(ins[2], []).append(ins[0])
    courses, used = [], set()
    while len(courses) < 80:
        code, name = W.pick(rng, DEPARTMENTS)
        title = W.pick(rng, COURSE_TITLES).format(name)
        if code not in by_dept or title in used:
            continue
        used.add(title)
        number = 100 * rng.randint(1, 4) + len(courses)  # unique: the index is below 100
        courses.append((f"{code}{number}", title, code, W.pick(rng, by_dept[code]), W.pick(rng, (3, 3, 4, 2))))
    students = [(i + 1, f, l, W.pick(rng, DEPARTMENTS)[0], rng.randint(2019, 2024), round(rng.uniform(2.0, 4.0), 2))
                for i, (f, l) in enumerate(W.unique(rng, 150, W.person))]
    enrolled = W.some(rng, [s[0] for s in students], 25)
    offered = W.some(rng, [c[0] for c in courses], 10)
    enrollments = [(i + 1, W.pick(rng, enrolled), W.pick(rng, offered), W.pick(rng, SEMESTERS), W.weighted(rng, GRADES))
                   for i in range(200)]
    return {"departments": depts, "instructors": instructors, "courses": courses, "students": students,
            "enrollments": enrollments}


_TAKES = "enrollments AS T1 JOIN courses AS T2 ON T1.course_id = T2.course_id"
TEMPLATES = (
    Template("custom", ("How many students got the grade {v} in {x}?", "Count the enrollments in {x} with grade {v}."),
             f"SELECT count(*) FROM {_TAKES} WHERE T1.grade = {{v}} AND T2.title = {{x}}",
             (("v", ("A", "B", "C")), ("x", f"SELECT DISTINCT T2.title FROM {_TAKES}")), 3),
    Template("custom", ("What is the title of the course with the most enrollments in {v}?",),
             f"SELECT T2.title FROM {_TAKES} WHERE T1.semester = {{v}} GROUP BY T1.course_id ORDER BY count(*) DESC LIMIT 1",
             (("v", SEMESTERS),), 2),
    Template("custom", ("List the course ids and titles of courses with {v} credits.",
                        "Which courses are worth {v} credits? Give their ids and titles."),
             "SELECT course_id, title FROM courses WHERE credits = {v}", (("v", "SELECT DISTINCT credits FROM courses"),), 2),
    Template("custom", ("Which instructors of the {v} department were hired after {x}?",
                        "Find the names of instructors of the {v} department hired after {x}."),
             "SELECT T1.name FROM instructors AS T1 JOIN departments AS T2 ON T1.dept_code = T2.dept_code "
             "WHERE T2.dept_name = {v} AND T1.hire_year > {x}",
             (("v", "SELECT DISTINCT T2.dept_name FROM instructors AS T1 JOIN departments AS T2 ON T1.dept_code = T2.dept_code"),
              ("x", (2000, 2005, 2010))), 2),
    Template("custom", ("What is the average GPA of students majoring in {v}?",
                        "Find the mean GPA of the students whose major is {v}."),
             "SELECT avg(T1.gpa) FROM students AS T1 JOIN departments AS T2 ON T1.major_code = T2.dept_code "
             "WHERE T2.dept_name = {v}", (("v", "SELECT DISTINCT dept_name FROM departments"),), 3),
    Template("custom", ("Which students have a GPA above 3.5 and enrolled in {v} or later? Give their first and last names.",),
             "SELECT first_name, last_name FROM students WHERE gpa > 3.5 AND enrollment_year >= {v}",
             (("v", (2020, 2021, 2022, 2023)),), 2),
    Template("custom", ("What are the names of departments located in {v}?", "Which departments are in the building {v}?"),
             "SELECT dept_name FROM departments WHERE building = {v}",
             (("v", "SELECT DISTINCT building FROM departments"),), 2),
    Template("custom", ("Which instructors teach no courses? Give their names.",
                        "Find the names of instructors who do not teach any course."),
             "SELECT name FROM instructors WHERE instructor_id NOT IN (SELECT instructor_id FROM courses)", instances=1),
)

BRIDGE = Bridge("enrollments", ("student_id", "students"), ("course_id", "courses"), {
    "a_of_b": ("Which students are enrolled in {v}? Give their first and last names.",
               "List the first and last names of the students who took {v}."),
    "b_of_a": ("What are the titles of the courses taken by {v}?", "Which courses has {v} enrolled in?"),
    "count_b": ("How many enrollments does the course {v} have?", "How many times did students enroll in {v}?"),
    "count_a": ("How many courses has {v} enrolled in?",),
    "count_a_of_b": ("How many different students took {v}?",),
    "per_b": ("For each course with enrollments, give its title and the number of enrollments.",),
    "per_a": ("Show the first and last name of every enrolled student and their number of enrollments.",),
    "top_b": ("Which course has the most enrollments? Give its title.", "What is the title of the most popular course?"),
    "top_a": ("Which student has enrolled in the most courses? Give the first and last name.",),
    "a_never": ("Which students have not enrolled in any course? Give their first and last names.",
                "List the first and last names of students with no enrollments."),
    "b_never": ("Which courses have no enrollments? List their titles.", "Find the titles of courses nobody enrolled in."),
    "a_both": ("Which students took both {v} and {x}? Give their first and last names.",),
    "b_of_acat": ("Which courses have been taken by students who enrolled in {v}? List the titles.",),
})

DOMAIN = Domain(
    "university", TABLES, rows,
    entities=(
        Entity("departments", "department", ("dept_name",), "name", categories=("building",), measures=("budget",),
               totals=("budget",)),
        Entity("instructors", "instructor", ("name",), measures=("salary", "hire_year"), totals=("salary",),
               pronoun="their"),
        Entity("courses", "course", ("title",), categories=("credits",), words=True),
        Entity("students", "student", ("first_name", "last_name"), "first and last name",
               categories=("enrollment_year",), measures=("gpa",), pronoun="their"),
        Entity("enrollments", "enrollment", categories=("semester", "grade")),
    ),
    links=(
        Link("instructors", "dept_code", "departments", "working in {}",
             ("Which department does {v} work in?", "What is the name of the department of instructor {v}?")),
        Link("courses", "dept_code", "departments", "offered by {}",
             ("Which department offers {v}?", "What is the name of the department that offers the course {v}?")),
        Link("students", "major_code", "departments", "majoring in {}"),
        Link("courses", "instructor_id", "instructors", "taught by {}",
             ("Who teaches {v}?", "What is the name of the instructor of the course {v}?")),
    ),
    bridges=(BRIDGE,),
    templates=TEMPLATES,
)
